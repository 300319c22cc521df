"""Deploying registered models: images, serving containers and the HAProxy router in front of them."""

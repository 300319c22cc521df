"""Data sources, the lake and manifests."""

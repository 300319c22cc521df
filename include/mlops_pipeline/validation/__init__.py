"""Batch validation with Great Expectations 1.x (called directly, no provider)."""

"""track_moe (docstring filled in below)."""

"""Offline datasets, one module per source. Nothing here downloads unless the user asks (`--download`)."""

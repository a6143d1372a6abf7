"""Reusable modules the recipes are built from, importable on their own: `from torch_cookbook.nn import ...`."""

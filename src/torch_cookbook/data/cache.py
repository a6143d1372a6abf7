"""The processed-data cache under ~/.cache/torch-cookbook (override with COOKBOOK_CACHE)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from torch_cookbook.atomic import save_atomic


def cache_dir() -> Path:
    root = Path(os.environ.get("COOKBOOK_CACHE", Path.home() / ".cache" / "torch-cookbook"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def load_cached(name: str, source_key: str) -> dict[str, torch.Tensor] | None:
    """Cached tensors for `name` made from `source_key`; None (and the file removed) if stale or corrupt."""
    path = cache_dir() / f"{name}.pt"
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        ok = blob.get("source_key") == source_key and tensor_digest(blob["tensors"]) == blob["digest"]
    except Exception:  # any unreadable cache is rebuilt, never trusted
        ok = False
    if not ok:
        path.unlink(missing_ok=True)
        return None
    return blob["tensors"]


def store_cached(name: str, source_key: str, tensors: dict[str, torch.Tensor]) -> None:
    blob = {"source_key": source_key, "digest": tensor_digest(tensors), "tensors": tensors}
    try:
        save_atomic(blob, cache_dir() / f"{name}.pt")
    except Exception:  # a read-only or full cache only costs speed
        pass

"""Writing a file so that a crash or a full disk mid-write leaves the previous version intact."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from torch_cookbook.errors import CheckpointError


def save_atomic(obj: Any, path: Path, before_replace: Callable[[], None] | None = None) -> None:
    """torch.save to `path` via temp file + fsync + rename. On failure the old file is untouched.

    `before_replace` runs after the new file is written and before it replaces the old one (the fault
    tests kill the process there).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        reason = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        kept = f"; the previous {path.name} is kept" if path.exists() else ""
        raise CheckpointError(f"could not write checkpoint {path}: {reason}{kept}") from None

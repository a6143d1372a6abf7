"""The seam for torch.distributed: rank, world size, and rank-0 I/O.

Only what the single-process engine needs lives here for now; the DDP recipe extends it.
"""

from __future__ import annotations

import os

import torch.distributed as dist


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 writes logs, checkpoints and plots; other ranks only compute."""
    return rank() == 0

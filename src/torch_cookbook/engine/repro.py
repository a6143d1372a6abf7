"""Seeding, determinism, thread count and device selection."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from torch_cookbook.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) so one seed gives one result on CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0 = one per core, at most 4). Returns the number used."""
    if threads <= 0:
        threads = int(os.environ.get("COOKBOOK_THREADS", "0")) or min(4, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu. An explicit device that is absent is a one-line error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available here; use cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps: MPS is not available here; use cpu or auto")
    return torch.device(name)


def rng_state() -> dict:
    """Every RNG state needed to continue a run exactly, as tensors and plain types (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "python": _python_state_to_list(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_python_state_from_list(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_list(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def member_seed(seed: int, member: int) -> int:
    """The seed of ensemble member `member` of a run seeded `seed` (member 0 is the run's own seed)."""
    return seed + 1000 * member

"""Atomic checkpoints that resume a run exactly, and loading that never executes code.

A checkpoint is a dict saved with `torch.save`:
    format_version, recipe, config_hash, step, state {name: state_dict}, extra, rng
It is written to a temp file in the same directory, fsync'd and renamed over the old one, so a crash
or a full disk mid-write leaves the previous checkpoint intact. Loading uses `weights_only=True`: a
pickle that would run code is refused before anything runs.
"""

from __future__ import annotations

import pickle
import signal
from pathlib import Path
from typing import Any

import torch

from torch_cookbook import atomic
from torch_cookbook.engine import faults
from torch_cookbook.engine.repro import rng_state, set_rng_state
from torch_cookbook.errors import CheckpointError, Interrupted, NonFiniteError

FORMAT_VERSION = 1


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to `path` via temp file + fsync + rename. On failure the old file is untouched."""
    atomic.save_atomic(obj, path, before_replace=faults.before_replace)


def load_checkpoint(path: Path, recipe: str | None = None, config_hash: str | None = None) -> dict:
    """Load a checkpoint safely and check it belongs to `recipe` and `config_hash` when given."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); it was not written completely")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported object"
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds objects that are not plain tensors or values "
            f"and loading it could run code ({first[:120]})"
        ) from None
    except Exception as e:  # arbitrary bytes raise arbitrary errors (IndexError, KeyError, ...): all are damage
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a torch-cookbook checkpoint")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {ckpt['format_version']}, this version reads {FORMAT_VERSION}"
        )
    if recipe is not None and ckpt.get("recipe") != recipe:
        raise CheckpointError(f"checkpoint {path} belongs to recipe {ckpt.get('recipe')!r}, not {recipe!r}")
    if config_hash is not None and ckpt.get("config_hash") != config_hash:
        raise CheckpointError(
            f"checkpoint {path} was made with a different config (hash {ckpt.get('config_hash')}, "
            f"expected {config_hash})"
        )
    return ckpt


class Checkpointer:
    """Saves and restores everything a training loop needs to continue exactly.

    Usage in a recipe:
        ckpt = run.checkpointer(model=model, optimizer=opt, scaler=scaler)
        step = ckpt.restore()            # 0 for a fresh run, else the saved step (RNG restored too)
        while step < total:
            ...one training step...
            step += 1
            ckpt.after_step(step, loss)   # NaN guard, periodic save, Ctrl-C save
        ckpt.save(step)
    """

    def __init__(self, directory: Path, recipe: str, config_hash: str, every: int, enabled: bool = True,
                 **objects: Any) -> None:
        self.directory = Path(directory)
        self.recipe = recipe
        self.config_hash = config_hash
        self.every = every
        self.enabled = enabled
        self.objects = {k: v for k, v in objects.items() if v is not None}
        self.extra: dict[str, Any] = {}
        self.best_value: float | None = None
        self._last_step = 0  # the last step reported finished (or restored)

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def state(self, step: int) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "recipe": self.recipe,
            "config_hash": self.config_hash,
            "step": step,
            "state": {name: _unwrap(obj).state_dict() for name, obj in self.objects.items()},
            "extra": self.extra,
            "best_value": self.best_value,
            "rng": rng_state(),
        }

    def save(self, step: int) -> None:
        if not self.enabled:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        save_atomic(self.state(step), self.last_path)

    def save_best(self, step: int, value: float, higher_is_better: bool = True) -> bool:
        """Keep best.pt for the best `value` seen so far. Returns True when this one is the new best."""
        better = self.best_value is None or (value > self.best_value if higher_is_better
                                              else value < self.best_value)
        if better:
            self.best_value = value
            if self.enabled:
                self.directory.mkdir(parents=True, exist_ok=True)
                save_atomic(self.state(step), self.best_path)
        return better

    def restore(self) -> int:
        """Load last.pt into the registered objects if it exists; return the step to continue from."""
        for stale in self.directory.glob(".*.tmp-*"):  # left by a crash in the middle of a save
            stale.unlink(missing_ok=True)
        self._last_step = faults.LAST_STEP = 0
        if not self.last_path.exists():
            return 0
        ckpt = load_checkpoint(self.last_path, self.recipe, self.config_hash)
        for name, obj in self.objects.items():
            if name not in ckpt["state"]:
                raise CheckpointError(f"checkpoint {self.last_path} has no state for {name!r}")
            _unwrap(obj).load_state_dict(ckpt["state"][name])
        self.extra = ckpt.get("extra", {})
        self.best_value = ckpt.get("best_value")
        set_rng_state(ckpt["rng"])
        self._last_step = faults.LAST_STEP = int(ckpt["step"])
        return self._last_step

    def after_step(self, step: int, loss: torch.Tensor | float | None = None) -> None:
        """Call once per finished step: stops on a non-finite loss, saves periodically and on Ctrl-C.

        A second call for a step already reported (e.g. a NaN check after the forward pass of the next
        step) only checks the loss: saving there would capture a half-done step (BatchNorm statistics
        already updated, parameters not), and the resumed run would apply that forward pass twice.
        """
        if loss is not None:
            check_finite(loss, step)
        faults.step_finished(step)
        if step == self._last_step:
            return
        self._last_step = step
        if STOP.requested:
            self.save(step)
            raise Interrupted("interrupted by Ctrl-C; checkpoint saved")
        if self.every and step % self.every == 0:
            self.save(step)


def check_finite(loss: torch.Tensor | float, step: int) -> None:
    value = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(loss)
    if not bool(torch.isfinite(value).all()):
        raise NonFiniteError(
            f"loss became {value.float().mean().item()} at step {step}; stopped, the last good checkpoint is kept"
        )


def _unwrap(obj: Any) -> Any:
    """DDP and torch.compile wrap the model; checkpoints hold the plain module's state."""
    obj = getattr(obj, "_orig_mod", obj)
    return getattr(obj, "module", obj) if isinstance(obj, torch.nn.parallel.DistributedDataParallel) else obj


class _StopFlag:
    """Set by SIGINT; training loops check it at step boundaries so the saved state is consistent."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def install(self) -> None:
        self.requested = False

        def handler(signum: int, frame: Any) -> None:
            if self.requested:  # a second Ctrl-C stops at once
                raise KeyboardInterrupt
            self.requested = True

        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self._previous = None

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


STOP = _StopFlag()


class EpisodeCheckpointer:
    """Drives a Checkpointer so that last.pt is only ever written between episodes.

    `step(n, loss)` is called after every environment step: NaN guard and crash injection run there,
    but no save (the environment's state mid-episode could not be restored). `episode_end(n)` saves when
    at least `every` environment steps passed since the last save, and on Ctrl-C, which therefore
    finishes the current episode before stopping.
    """

    def __init__(self, ckpt: Checkpointer) -> None:
        self.ckpt = ckpt
        self.every = ckpt.every  # --checkpoint_every or the recipe's default, in environment steps
        ckpt.every = 0  # the Checkpointer itself must never save mid-episode
        self.saved_at = 0

    def restore(self) -> int:
        self.saved_at = self.ckpt.restore()
        return self.saved_at

    def step(self, step: int, loss: torch.Tensor | float | None = None) -> None:
        if STOP.requested:  # Ctrl-C: do not save here; episode_end saves and stops
            if loss is not None:
                check_finite(loss, step)
            return
        self.ckpt.after_step(step, loss)

    def episode_end(self, step: int) -> None:
        if STOP.requested or (self.every and step - self.saved_at >= self.every):
            self.ckpt.save(step)
            self.saved_at = step
        if STOP.requested:
            raise Interrupted("interrupted by Ctrl-C; checkpoint saved at the end of the episode")

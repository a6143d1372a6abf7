"""The pieces of a training loop that every recipe would otherwise repeat.

Recipes keep their loop in plain sight; these helpers only hold the fiddly parts: autocast and the
GradScaler, gradient clipping, a check that gradients are finite, and a data order that can be resumed
at any step.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from torch_cookbook.engine import faults
from torch_cookbook.errors import ConfigError, NonFiniteError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """`torch.autocast` for `amp` in {off, bf16, fp16}; a no-op context for off."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 has fp32's range and needs no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))


def apply_update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
                 clip_norm: float = 0.0, parameters: Iterable[torch.Tensor] | None = None,
                 step: int | None = None) -> tuple[bool, torch.Tensor | None]:
    """zero_grad → (scaled) backward → unscale → clip → step → scaler update; reads nothing from the device.

    Returns (stepped, gradient norm). With fp16 the scaler skips steps whose gradients overflowed and
    lowers the scale: that is expected and not an error, so it is only reported (one line on stderr),
    stepped is False and the norm is None (the scaler is the guard). Unscaling before clipping makes
    `clip_norm` mean the true gradient norm. `step` names the step in that report.
    """
    params = list(parameters) if parameters is not None else _params(optimizer)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        if clip_norm > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, clip_norm)
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if scaler.get_scale() < scale:  # update() lowers the scale only after an overflow, i.e. a skipped step
            at = step if step is not None else faults.LAST_STEP + 1
            print(f"fp16: gradients overflowed at step {at}: update skipped, "
                  f"loss scale lowered to {scaler.get_scale():g}", file=sys.stderr, flush=True)
            return False, None
        return True, None
    norm = _backward_norm(loss, params, clip_norm)
    optimizer.step()
    return True, norm


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
                  clip_norm: float = 0.0, parameters: Iterable[torch.Tensor] | None = None) -> bool:
    """`apply_update` that checks the gradient before the update (one device sync): for loops without a
    Trainer. A non-finite gradient norm under a finite loss raises NonFiniteError and leaves the parameters
    as they were. Returns whether it stepped."""
    params = list(parameters) if parameters is not None else _params(optimizer)
    if scaler is not None and scaler.is_enabled():
        return apply_update(loss, optimizer, scaler, clip_norm, params)[0]
    optimizer.zero_grad(set_to_none=True)
    norm = _backward_norm(loss, params, clip_norm)
    if not bool(torch.isfinite(norm)) and bool(torch.isfinite(loss.detach()).all()):
        raise NonFiniteError(
            f"gradient norm became {norm.item()} at step {faults.LAST_STEP + 1} with a finite loss "
            f"({loss.detach().float().mean().item():.4g}); stopped before the update, the last good checkpoint is kept"
        )
    optimizer.step()
    return True


def _backward_norm(loss: torch.Tensor, params: list[torch.Tensor], clip_norm: float) -> torch.Tensor:
    """Backward, then clip to `clip_norm`; returns the total gradient norm before clipping."""
    loss.backward()
    # The total norm costs one pass over the gradients (free when clipping, which computes it anyway).
    if clip_norm > 0:
        return nn.utils.clip_grad_norm_(params, clip_norm)
    return nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of `n` examples for `epoch`: a function of (seed, epoch) only, so resume is exact."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def minibatches(n: int, batch_size: int, seed: int, start_step: int = 0,
                drop_last: bool = True) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Endless (step, epoch, indices) from per-epoch shuffles, starting at global `start_step`.

    Data kept as tensors in memory and indexed by these is much faster on CPU than a DataLoader
    with per-item transforms, and the order depends only on (seed, step).
    """
    per_epoch = n // batch_size if drop_last else -(-n // batch_size)
    if per_epoch == 0:
        raise ConfigError(f"--batch_size {batch_size}: larger than the {n} training examples")
    step = start_step
    while True:
        epoch, offset = divmod(step, per_epoch)
        order = epoch_order(n, seed, epoch)
        for i in range(offset, per_epoch):
            yield step, epoch, order[i * batch_size:(i + 1) * batch_size]
            step += 1


def batches(n: int, batch_size: int, seed: int, start_step: int = 0, drop_last: bool = True) -> Iterator[torch.Tensor]:
    """The index tensors of `minibatches` alone: what `Trainer.steps` iterates over."""
    return (idx for _step, _epoch, idx in minibatches(n, batch_size, seed, start_step, drop_last))


def cosine_decay(steps: int) -> Callable[[int], float]:
    """Learning-rate multiplier for `LambdaLR`: cosine decay from 1 at step 0 to 0 at `steps`."""
    return lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps))


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Evaluation mode (dropout off, BatchNorm on running statistics) inside, each model's own mode after."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


# Time spent making minibatches (indexing in-memory tensors, copying to the device) and examples taken, in
# this process since the last reset: summary.json reports them as the run's data-loading time and
# training samples, so a benchmark can say what share of a run the data costs.
DATA_TIME_S = 0.0
SAMPLES_TAKEN = 0


def reset_data_counters() -> None:
    global DATA_TIME_S, SAMPLES_TAKEN
    DATA_TIME_S, SAMPLES_TAKEN = 0.0, 0


def take(idx: torch.Tensor, *tensors: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The minibatch `idx` of each of `tensors` (the rows of the same examples), on `device`; timed."""
    global DATA_TIME_S, SAMPLES_TAKEN
    t0 = time.perf_counter()
    with torch.profiler.record_function("data"):  # names the data-loading ops in a torch.profiler trace
        batch = tuple(t[idx].to(device) for t in tensors)
    DATA_TIME_S += time.perf_counter() - t0
    SAMPLES_TAKEN += len(idx)
    return batch


@torch.inference_mode()
def predict_batches(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1000,
                    amp: str = "off") -> torch.Tensor:
    """Model outputs for all of `x`, in eval mode, in batches; returns float32 on the CPU."""
    outs = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            with autocast(device, amp):
                outs.append(model(x[i:i + batch_size].to(device)).float().cpu())
    return torch.cat(outs)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 1000,
             amp: str = "off") -> float:
    """Top-1 accuracy of a classifier on (x, y), evaluated in eval mode."""
    logits = predict_batches(model, x, device, batch_size, amp)
    return (logits.argmax(1) == y).float().mean().item()

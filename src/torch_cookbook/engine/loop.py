"""The pieces of a training loop that every recipe would otherwise repeat.

Recipes keep their loop in plain sight; these helpers only hold the fiddly parts: autocast and the
GradScaler, gradient clipping, a check that gradients are finite, and a data order that can be resumed
at any step.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from torch_cookbook.engine import checkpoint
from torch_cookbook.engine.errors import ConfigError, NonFiniteError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """`torch.autocast` for `amp` in {off, bf16, fp16}; a no-op context for off."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 has fp32's range and needs no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
                  clip_norm: float = 0.0, parameters: Iterable[torch.Tensor] | None = None) -> bool:
    """zero_grad → (scaled) backward → unscale → clip → step → scaler update. Returns whether it stepped.

    With fp16 the scaler skips steps whose gradients overflowed and lowers the scale: that is expected
    and not an error, so it is only reported (one line on stderr) and False is returned. Without a
    scaler, a non-finite gradient norm under a finite loss raises NonFiniteError before the update, so
    the parameters and the last checkpoint stay good. Unscaling before clipping makes `clip_norm`
    mean the true gradient norm.
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
            print(f"fp16: gradients overflowed at step {checkpoint.LAST_STEP + 1}: update skipped, "
                  f"loss scale lowered to {scaler.get_scale():g}", file=sys.stderr, flush=True)
            return False
        return True
    loss.backward()
    # The total norm costs one pass over the gradients (free when clipping, which computes it anyway).
    if clip_norm > 0:
        norm = nn.utils.clip_grad_norm_(params, clip_norm)
    else:
        norm = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    if not bool(torch.isfinite(norm)) and bool(torch.isfinite(loss.detach()).all()):
        # A non-finite loss is left to the loss guard in Checkpointer.after_step (or to a recipe that
        # records divergence as a result); a finite loss with a non-finite gradient would poison the
        # parameters, and the next periodic save would overwrite the last good checkpoint with them.
        raise NonFiniteError(
            f"gradient norm became {norm.item()} at step {checkpoint.LAST_STEP + 1} with a finite loss "
            f"({loss.detach().float().mean().item():.4g}); stopped before the update, the last good checkpoint is kept"
        )
    optimizer.step()
    return True


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
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, len(x), batch_size):
        with autocast(device, amp):
            outs.append(model(x[i:i + batch_size].to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(outs)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 1000,
             amp: str = "off") -> float:
    """Top-1 accuracy of a classifier on (x, y), evaluated in eval mode."""
    logits = predict_batches(model, x, device, batch_size, amp)
    return (logits.argmax(1) == y).float().mean().item()

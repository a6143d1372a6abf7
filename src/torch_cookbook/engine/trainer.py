"""The scaffold around a training loop: resume, progress, the NaN guard and checkpoints.

A recipe writes its own loop body and iterates over the scaffold:

    trainer = Trainer(run, cfg.steps, every=cfg.eval_every, model=model, optimizer=optimizer, scaler=scaler)
    for step, idx in trainer.steps(batches(len(x), cfg.batch_size, cfg.seed, trainer.start)):
        x, y = take(idx, x_train, y_train, device=run.device)
        with autocast(run.device, cfg.amp):
            loss = F.cross_entropy(model(x), y)
        trainer.backward(loss)                   # zero_grad / scale / unscale / clip / step / scaler update

`Trainer(...)` restores the last checkpoint (weights, optimizer, RNG) and sets `start`; `steps()` yields
the steps still to run and, after each, advances the progress bar, saves every `every` steps (and on
Ctrl-C), and saves once more at the end. The losses stay on the device: the NaN guard and the progress
bar read them every `log_every` steps and before every save, so a GPU is not made to wait each step, and
no checkpoint is ever written after a non-finite loss or gradient.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn

from torch_cookbook.engine import distributed, faults
from torch_cookbook.engine.checkpoint import STOP
from torch_cookbook.engine.loop import apply_update
from torch_cookbook.engine.progress import Progress
from torch_cookbook.errors import Interrupted, NonFiniteError

T = TypeVar("T")


class Trainer:
    """Resume, progress, NaN guard and checkpoints for one training loop (one run or one variant).

    `objects` are everything the loop must restore to continue exactly: model(s), optimizer(s), scaler(s),
    scheduler(s), anything with state_dict/load_state_dict. `optimizer` and `scaler`, when given, are the
    ones `backward` steps unless it is told otherwise. `extra` is a dict saved with every checkpoint.
    """

    def __init__(self, run: Any, steps: int, *, every: int = 0, log_every: int = 0, clip_norm: float = 0.0,
                 description: str = "", **objects: Any) -> None:
        self.run = run
        self.total = steps
        self.clip_norm = clip_norm
        self.ckpt = run.checkpointer(every=every, **objects)
        self.start = self.ckpt.restore()
        self.step = self.start  # steps finished
        self.log_every = log_every or self.ckpt.every or 50
        self.description = description or run.name or run.recipe
        self.optimizer = objects.get("optimizer")
        self.scaler = objects.get("scaler")
        self._pending: list[tuple[int, str, torch.Tensor, torch.Tensor | None]] = []  # (step, name, loss, grad norm)
        self._shown: dict[str, float] = {}
        self._stop = False
        self._accept_nonfinite = False
        self._in_body = False  # inside the loop body the current step's update counts as done

    @property
    def extra(self) -> dict[str, Any]:
        """Values saved with every checkpoint and restored on resume (what a loop decided along the way)."""
        return self.ckpt.extra

    # ---- the loop ----------------------------------------------------------------------------------
    def steps(self, batches: Iterable[T] | None = None) -> Iterator[tuple[int, T]] | Iterator[int]:
        """Yield the steps from `start` to the end: `(step, batch)` with `batches`, else `step` alone.

        `step` counts from 0; when the loop body has run, `step + 1` steps are finished. `batches` must
        begin at `start` (e.g. `batches(..., start_step=trainer.start)`).
        """
        source = iter(batches) if batches is not None else None
        with Progress(self.total, self.description, start=self.start) as bar:
            while self.step < self.total and not self._stop:
                step = self.step
                if source is None:
                    self._in_body = True
                    yield step
                else:
                    try:
                        batch = next(source)
                    except StopIteration:
                        break
                    self._in_body = True
                    yield step, batch
                self._in_body = False
                self.step = done = step + 1
                if self._accept_nonfinite:
                    self._pending.clear()
                    break
                due_log = done % self.log_every == 0 or done == self.total
                due_save = bool(self.ckpt.every) and done % self.ckpt.every == 0
                if due_log or due_save or STOP.requested or self._stop:
                    self.check_finite()
                bar.advance(1, **(self._shown if due_log else {}))
                faults.step_finished(done)
                if STOP.requested:
                    self.ckpt.save(done)
                    raise Interrupted("interrupted by Ctrl-C; checkpoint saved")
                if due_save:
                    self.ckpt.save(done)
        if not self._accept_nonfinite:
            self.check_finite()
        self.ckpt.save(self.step)

    def stop(self, accept_nonfinite: bool = False) -> None:
        """End the loop after the current step (early stopping); before the loop, run no step at all.

        `accept_nonfinite`: the current step's non-finite loss is a result the recipe records (a study of
        divergence), not an error: the step's losses are not checked and the final save keeps its state.
        """
        self._stop = True
        self._accept_nonfinite = accept_nonfinite

    # ---- the update ----------------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer | None = None,
                 scaler: torch.amp.GradScaler | None = None, *, clip_norm: float | None = None,
                 parameters: Iterable[torch.Tensor] | None = None, name: str = "loss") -> bool:
        """zero_grad → (scaled) backward → unscale → clip → step → scaler update, with `optimizer` and
        `scaler` defaulting to the trainer's. Returns False when fp16's scaler skipped an overflowed step.
        The loss and the gradient norm join the NaN guard's queue; nothing is read from the device here."""
        optimizer = optimizer or self.optimizer
        if optimizer is None:
            raise TypeError("Trainer.backward needs an optimizer: pass one, or give the Trainer `optimizer=`")
        scaler = scaler if scaler is not None else self.scaler
        clip = self.clip_norm if clip_norm is None else clip_norm
        stepped, norm = apply_update(loss, optimizer, scaler, clip, parameters, step=self.done)
        self._pending.append((self.done, name, loss.detach(), norm))
        return stepped

    @property
    def done(self) -> int:
        """Steps finished, counting the one whose body is running."""
        return self.step + 1 if self._in_body else self.step

    def record(self, loss: torch.Tensor | float, name: str = "loss") -> None:
        """Put a loss the recipe computed without `backward` (an L-BFGS closure, a table update) under the
        NaN guard and on the progress bar."""
        value = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        self._pending.append((self.done, name, value, None))

    def diverged(self) -> bool:
        """Whether the latest queued loss or gradient norm is non-finite, read now (one device sync): for
        studies where divergence is a result (a learning rate too large), not an error."""
        if not self._pending:
            return False
        _, _, loss, norm = self._pending[-1]
        finite = torch.isfinite(loss).all()
        if norm is not None:
            finite = finite & torch.isfinite(norm)
        return not bool(finite)

    def check_finite(self) -> None:
        """Read the queued losses and gradient norms (one device sync); raise NonFiniteError at the first
        non-finite one. Runs before every save, so no checkpoint ever holds what such a step produced."""
        if not self._pending:
            return
        rows = []
        for _, _, loss, norm in self._pending:
            norm = norm if norm is not None else torch.zeros((), device=loss.device)
            # Finite or not is judged in each value's own dtype: a float64 loss of 1e39 is finite, not inf.
            rows.append(torch.stack([loss.float().mean(), norm.float().to(loss.device),
                                     torch.isfinite(loss).all().float(), torch.isfinite(norm).float().to(loss.device)]))
        read = torch.stack(rows).cpu().tolist()
        pending, self._pending = self._pending, []
        for (step, name, _, _), (loss, norm, loss_ok, norm_ok) in zip(pending, read):
            if not loss_ok:
                raise NonFiniteError(f"{name} became {loss} at step {step}; stopped, the last good checkpoint is kept")
            if not norm_ok:
                raise NonFiniteError(f"gradient norm became {norm} at step {step} with a finite {name} ({loss:.4g}); "
                                     "stopped, the last good checkpoint is kept")
            self._shown[name] = loss

    # ---- checkpoints ---------------------------------------------------------------------------------
    def save(self) -> None:
        """Save last.pt now (after the loop, once `extra` holds what was computed after the last step)."""
        self.check_finite()
        self.ckpt.save(self.step)

    def save_best(self, value: float, higher_is_better: bool = True) -> bool:
        """Keep best.pt for the best validation `value` so far (checked finite first). True if this is it."""
        self.check_finite()
        return self.ckpt.save_best(self.done, value, higher_is_better)

    @property
    def best_value(self) -> float | None:
        return self.ckpt.best_value

    def load_best(self, model: nn.Module, name: str = "model") -> dict[str, Any]:
        """Load best.pt's weights into `model` (train, keep the best on validation, reload it, test)."""
        distributed.barrier()  # under torchrun rank 0 wrote best.pt: the others read it once it is whole
        return self.run.load(model, which="best", name=name)

"""Model parallelism: one model split into two stages that live on two devices or in two processes.

Data parallelism (DDP) copies the whole model to every worker and splits the *batch*. Model
parallelism splits the *model*: stage 0 holds the first layers, stage 1 the rest, and activations
travel forward from 0 to 1 while their gradients travel back. Alone that leaves one stage idle while
the other works; cutting the batch into micro-batches (GPipe) lets stage 0 start micro-batch i+1 while
stage 1 works on micro-batch i.

    stage0, stage1 = split_stages(model, at=3)
    TwoDevicePipeline(stage0, stage1, ("cuda:0", "cuda:1"), chunks=4)   # one process, two GPUs
    pipeline_step_p2p(stage, x, y, chunks=4)                             # two processes, send/recv

Both compute exactly what the unsplit model computes: the loss of the whole batch is the size-weighted
sum of the micro-batch losses, and autograd (or the explicit gradient messages) carry the rest.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["split_stages", "TwoDevicePipeline", "pipeline_step_p2p"]

_HEADER = 8  # activation shapes travel as a fixed-size int64 header, padded with -1


def split_stages(model: nn.Sequential, at: int) -> tuple[nn.Sequential, nn.Sequential]:
    """model[:at] and model[at:]. The stages share the model's modules (and parameters)."""
    if not 0 < at < len(model):
        raise ValueError(f"split point {at} must lie inside the model's {len(model)} layers")
    return model[:at], model[at:]


class TwoDevicePipeline(nn.Module):
    """Stage 0 on `devices[0]`, stage 1 on `devices[1]`, the batch fed through in `chunks` micro-batches.

    On two GPUs the kernel launches are asynchronous, so stage 0 computes micro-batch i+1 while stage 1
    still works on micro-batch i. On one CPU device the schedule is the same without the overlap: it
    still shows that the split model computes the same outputs and gradients.
    """

    def __init__(self, stage0: nn.Module, stage1: nn.Module, devices: tuple[str | torch.device, ...] = ("cpu", "cpu"),
                 chunks: int = 4) -> None:
        super().__init__()
        self.devices = [torch.device(d) for d in devices]
        self.stage0 = stage0.to(self.devices[0])
        self.stage1 = stage1.to(self.devices[1])
        self.chunks = chunks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for micro in x.chunk(self.chunks):
            hidden = self.stage0(micro.to(self.devices[0]))
            outs.append(self.stage1(hidden.to(self.devices[1])))  # autograd sends the gradient back across
        return torch.cat(outs)


def pipeline_step_p2p(stage: nn.Module, x: torch.Tensor | None, y: torch.Tensor, chunks: int = 4,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
                      first: int = 0, second: int = 1) -> tuple[float | None, torch.Tensor | None]:
    """Forward and backward of a two-stage model over ranks `first` and `second` (GPipe schedule).

    Rank `first` holds stage 0 and the inputs `x`; rank `second` holds stage 1 and the labels `y`.
    Forward: every micro-batch's activation is sent 0 → 1. Backward, in reverse order: rank 1
    back-propagates each micro-batch loss and sends the activation's gradient 1 → 0, where stage 0
    continues the backward pass. Afterwards each rank holds its own stage's gradients, as if the
    whole model had run `loss_fn(model(x), y).backward()` in one place.

    Returns (loss, outputs) on rank `second` and (None, None) on rank `first`.
    """
    me = dist.get_rank()
    if me == first:
        if x is None:
            raise ValueError("the first stage needs the inputs x")
        sent = []
        for micro in x.chunk(chunks):
            hidden = stage(micro)
            header = torch.full((_HEADER,), -1, dtype=torch.long)
            header[:hidden.dim()] = torch.tensor(hidden.shape)
            dist.send(header, dst=second)
            dist.send(hidden.detach().contiguous(), dst=second)
            sent.append(hidden)
        for hidden in reversed(sent):  # drain: gradients come back last micro-batch first
            grad = torch.empty_like(hidden)
            dist.recv(grad, src=second)
            hidden.backward(grad)
        return None, None
    if me != second:
        return None, None
    received, losses, outputs = [], [], []
    for labels in y.chunk(chunks):
        header = torch.empty(_HEADER, dtype=torch.long)
        dist.recv(header, src=first)
        hidden = torch.empty([int(s) for s in header if s >= 0])
        dist.recv(hidden, src=first)
        hidden.requires_grad_()
        out = stage(hidden)
        # The full batch's mean loss is the size-weighted sum of the micro-batch means.
        losses.append(loss_fn(out, labels) * (len(labels) / len(y)))
        received.append(hidden)
        outputs.append(out.detach())
    for hidden, loss in zip(reversed(received), reversed(losses)):
        loss.backward()
        dist.send(hidden.grad.contiguous(), dst=first)
    return sum(loss.item() for loss in losses), torch.cat(outputs)

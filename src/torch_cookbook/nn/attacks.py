"""Adversarial examples under an L∞ budget: FGSM and PGD.

Both take images in [0, 1] (put any normalisation inside the model, so ε is measured in pixel units)
and return perturbed images that stay inside the ε-ball around `x` and inside [0, 1]. The gradient is
taken with `torch.autograd.grad` with respect to the input only, so the attack never writes into the
model's `.grad` fields and can run in the middle of a training step. The model's train/eval mode is
left as the caller set it (attack a training model in eval mode if it has BatchNorm or dropout).

    x_adv = pgd_linf(model, x, y, eps=0.1, alpha=0.01, steps=20)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ATTACKS", "check_eps", "fgsm", "pgd_linf"]

ATTACKS = ("fgsm", "pgd")


def check_eps(eps: float) -> None:
    """ε must be in (0, 1] for images in [0, 1]."""
    if not (0.0 < float(eps) <= 1.0):
        raise ValueError(f"eps {eps}: out of range, allowed (0, 1] for images in [0, 1]")


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂ loss / ∂ x for a copy of x; parameters' .grad fields are not touched."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Back into the ε-ball around x, then into the valid pixel range."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, random_start: bool = False,
         alpha: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size `alpha` (default ε).

    With `random_start` the step starts from a uniform point in the ε-ball, as in "fast adversarial
    training" (Wong et al. 2020, who use alpha = 1.25 ε); the result is projected back into the ball.
    """
    check_eps(eps)
    alpha = eps if alpha is None else alpha
    start = x
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        start = _project(x + eps * noise, x, eps)
    step = alpha * _input_grad(model, start, y).sign()
    return _project(start + step, x, eps).detach()


def pgd_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, *,
             random_start: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent in L∞ (Madry et al. 2018): `steps` signed steps of size `alpha`,
    each followed by projection onto the ε-ball and [0, 1]; optionally from a uniform random start."""
    check_eps(eps)
    if steps < 1:
        raise ValueError(f"steps {steps}: PGD needs at least one step")
    x = x.detach()
    x_adv = x
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        x_adv = _project(x + eps * noise, x, eps)
    for _ in range(steps):
        x_adv = _project(x_adv + alpha * _input_grad(model, x_adv, y).sign(), x, eps)
    return x_adv.detach()

"""FID, the Fréchet distance between two image sets in a network's feature space (Heusel et al., 2017).

FID = ||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^½) between the Gaussians fitted to the features of the two sets.
Two instruments:
- any feature module through torchmetrics' `FrechetInceptionDistance` (`fids`): the generative recipes' own
  Fashion-MNIST classifier on the bundled data;
- EfficientNet-Lite0's ImageNet features (`lite0_instrument`, `image_features`, `frechet_distance`) for a user's
  unlabelled images, where no classifier of their classes exists. The usual instrument is Inception-v3 at 299 px;
  Lite0 reads the images at their own size (32 or 64 px) and gives its pooled 1280-d feature. Features are computed
  once per image set and kept: each set costs one pass through the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from torch_cookbook.nn.efficientnet import lite0, lite0_features

__all__ = ["lite0_instrument", "image_features", "frechet_distance", "lite0_fids", "lite0_fid_to", "fids"]


def lite0_instrument() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode. Building it draws a random initialisation before
    the weights load: that happens on a forked RNG, so measuring never moves the caller's random stream."""
    with torch.random.fork_rng(devices=[]):
        return lite0().eval()


@torch.inference_mode()
def image_features(model: nn.Module, images: torch.Tensor | Iterable[torch.Tensor], batch: int = 250) -> torch.Tensor:
    """Lite0's pooled features (N, 1280) as float64, for images in [0, 1] (or uint8), `batch` at a time; `images` is a
    tensor or an iterable of tensors (a generator's samples, never all in memory at once). Grey is replicated."""
    chunks = [images] if isinstance(images, torch.Tensor) else images
    out = []
    for chunk in chunks:
        for x in chunk.split(batch):
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            out.append(lite0_features(model, x).double())
    return torch.cat(out)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between two sets of features (N, D), in float64. Tr((S_a S_b)^½) is the sum of the square roots of the
    eigenvalues of S_a S_b (real and non-negative in exact arithmetic; the tiny imaginary parts of rounding dropped)."""
    a, b = a.double(), b.double()
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root_trace = torch.linalg.eigvals(cov_a @ cov_b).sqrt().real.sum()
    return float((a.mean(0) - b.mean(0)).square().sum() + cov_a.trace() + cov_b.trace() - 2 * root_trace)


def lite0_fids(real: torch.Tensor, *others: torch.Tensor | Iterable[torch.Tensor]) -> list[float]:
    """The FID of each set in `others` (tensors, or iterables of batches) against `real`, in Lite0's features; the
    real set's features are computed once."""
    model = lite0_instrument()
    reference = image_features(model, real)
    return [frechet_distance(reference, image_features(model, images)) for images in others]


def lite0_fid_to(real: torch.Tensor) -> Callable[[torch.Tensor | Iterable[torch.Tensor]], float]:
    """images → their FID against `real` in Lite0's features; the real set goes through the network once, now."""
    model = lite0_instrument()
    reference = image_features(model, real)
    return lambda images: frechet_distance(reference, image_features(model, images))


@torch.no_grad()
def fids(extractor: nn.Module, real: torch.Tensor, *others: torch.Tensor, batch: int = 1000) -> list[float]:
    """torchmetrics' FID of each set in `others` against `real`, with `extractor` (images in [0, 1] → features,
    declaring `num_features`) as the feature network.

    The real statistics are computed once and kept (`reset_real_features=False`); `reset()` clears only
    the other side between sets.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False)
    for i in range(0, len(real), batch):
        metric.update(real[i:i + batch], real=True)
    out = []
    for images in others:
        metric.reset()
        for i in range(0, len(images), batch):
            metric.update(images[i:i + batch], real=False)
        out.append(metric.compute().item())
    return out

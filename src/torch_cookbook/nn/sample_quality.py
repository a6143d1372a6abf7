"""Measuring generated images beside FID: precision and recall, class coverage, and a calibration ladder.

- Precision and recall (Kynkäänniemi et al., 2019, "Improved precision and recall metric for assessing generative
  models"): each set's manifold is the union of balls around its points, each ball reaching that point's k-th nearest
  neighbour in the same set. Precision: the share of generated points inside the real manifold (are samples
  realistic?). Recall: the share of real points inside the generated manifold (is the data's variety covered?).
  FID folds both into one number; these two tell them apart.
- Class coverage: the histogram of a classifier's labels for the samples, its smallest share and its KL divergence
  to the uniform distribution (a generator collapsed onto a few modes fails here).
- Degradations for a calibration ladder: real images under Gaussian pixel noise or a Gaussian blur, whose FIDs
  show what a given FID looks like in the same feature space.
"""

from __future__ import annotations

import math

import torch

__all__ = ["knn_radii", "knn_precision_recall", "class_coverage", "pixel_noise", "gaussian_blur", "NOISE_LEVELS",
           "BLUR_SIGMAS", "calibration_ladder", "classifier_sample_quality"]

NOISE_LEVELS = (0.05, 0.1, 0.2)  # the ladder's Gaussian pixel noise, for pixels in [0, 1]
BLUR_SIGMAS = (0.5, 1.0)  # the ladder's Gaussian blurs, in pixels


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a.double(), b.double())


def knn_radii(features: torch.Tensor, k: int = 3, batch: int = 1000) -> torch.Tensor:
    """For each point (N, D), the distance to its k-th nearest neighbour among the *other* points of the set."""
    if not 1 <= k < len(features):
        raise ValueError(f"k = {k}: needs 1 <= k < the number of points ({len(features)})")
    radii = []
    for i in range(0, len(features), batch):
        d = _distances(features[i:i + batch], features)
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])  # column 0 is the point itself, at 0
    return torch.cat(radii)


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """Whether each point lies in at least one ball (centre, radius), boundary included."""
    return torch.cat([(_distances(points[i:i + batch], centres) <= radii).any(dim=1)
                      for i in range(0, len(points), batch)])


def knn_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features `fake` against real features `real`, both (N, D), k-NN manifolds."""
    precision = _inside(fake, real, knn_radii(real, k)).double().mean().item()
    recall = _inside(real, fake, knn_radii(fake, k)).double().mean().item()
    return precision, recall


def class_coverage(classes: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, float]:
    """(share of each class (n_classes,), KL(shares || uniform)) for predicted labels `classes` (N,); 0·log 0 = 0."""
    frac = torch.bincount(classes, minlength=n_classes).double() / len(classes)
    return frac, (frac * (frac.clamp_min(1e-12) * n_classes).log()).sum().item()


def pixel_noise(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """Images in [0, 1] plus N(0, sigma²) noise per pixel (a noise stream of its own), clipped to [0, 1]."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images + sigma * noise).clamp(0, 1)


def gaussian_blur(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Images (N, C, H, W) blurred by a Gaussian of `sigma` pixels (kernel ±3σ, edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-x.square() / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    padded = torch.nn.functional.pad(images.float(), (radius,) * 4, mode="replicate")
    rows = torch.nn.functional.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return torch.nn.functional.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def calibration_ladder(real: torch.Tensor, seed: int) -> dict[str, tuple[str, torch.Tensor]]:
    """name → (label, images): real images in [0, 1] under each of NOISE_LEVELS and each of BLUR_SIGMAS. Names
    write σ's point as p: noise_0p05, blur_1."""
    noisy = {f"noise_{s:g}": (f"noise σ {s:g}", pixel_noise(real, s, seed)) for s in NOISE_LEVELS}
    blurred = {f"blur_{s:g}": (f"blur σ {s:g} px", gaussian_blur(real, s)) for s in BLUR_SIGMAS}
    return {name.replace(".", "p"): value for name, value in {**noisy, **blurred}.items()}


@torch.no_grad()
def classifier_sample_quality(classifier: torch.nn.Module, real_features: torch.Tensor, images: torch.Tensor,
                              n_classes: int, k: int = 3, batch: int = 1000) -> tuple[dict[str, float], torch.Tensor]:
    """A classifier's view of generated `images`: ({precision, recall, kl_to_uniform, min_class_fraction,
    max_class_fraction}, share of each class). `classifier` has `features(x)`, the space of FID and of the k-NN
    manifolds (`real_features` are the real images' features there), and `head(features)`, its class logits."""
    features, classes = [], []
    for i in range(0, len(images), batch):
        features.append(classifier.features(images[i:i + batch].float()))
        classes.append(classifier.head(features[-1]).argmax(1))
    frac, kl = class_coverage(torch.cat(classes), n_classes)
    precision, recall = knn_precision_recall(real_features, torch.cat(features), k)
    return {"precision": precision, "recall": recall, "kl_to_uniform": kl, "min_class_fraction": frac.min().item(),
            "max_class_fraction": frac.max().item()}, frac

"""DCGAN generator and discriminator sized for 28×28 greyscale images (Radford et al., 2015).

The DCGAN rules, kept: strided (transposed) convolutions instead of pooling, BatchNorm in G (not on
its output) and in D (not on its input), ReLU in G with tanh output, LeakyReLU(0.2) in D, weights
drawn from N(0, 0.02). Images are in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Generator", "Discriminator", "dcgan_init"]


class Generator(nn.Module):
    """z (N, latent) → Linear → (4w, 7, 7) → ConvT → (2w, 14, 14) → ConvT → (1, 28, 28) in [-1, 1]."""

    def __init__(self, latent_dim: int = 64, width: int = 16) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.project = nn.Sequential(nn.Linear(latent_dim, 4 * width * 7 * 7, bias=False),
                                     nn.BatchNorm1d(4 * width * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, stride=2, padding=1, bias=False),  # 7 → 14
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, 1, 4, stride=2, padding=1),  # 14 → 28
            nn.Tanh(),
        )
        self.width = width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z).view(len(z), 4 * self.width, 7, 7))


class Discriminator(nn.Module):
    """(N, 1, 28, 28) → Conv s2 → (w, 14, 14) → Conv s2 → (2w, 7, 7) → Linear → one logit per image.

    It returns logits, not probabilities: `binary_cross_entropy_with_logits` is the numerically safe
    form of the seed's "cross-entropy" (log-sigmoid never rounds to log 0).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # no BN on the input layer
            nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(4 * width), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(4 * width * 7 * 7, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights ~ N(0, 0.02), BN scale ~ N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)

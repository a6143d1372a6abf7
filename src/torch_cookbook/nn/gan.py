"""DCGAN generator and discriminator for 28×28, 32×32 or 64×64 images, grey or RGB (Radford et al., 2015), and the
textbook fully connected GAN beside them as a baseline.

The DCGAN rules, kept: strided (transposed) convolutions instead of pooling, BatchNorm in G (not on
its output) and in D (not on its input), ReLU in G with tanh output, LeakyReLU(0.2) in D, weights
drawn from N(0, 0.02). Images are in [-1, 1]. Both networks work on a base grid of 7×7 (28 pixels) or
8×8 (32 and 64 pixels) and double it per stride-2 stage: two stages, or three for 64 pixels.

The MLP GAN (`MLPGenerator`, `MLPDiscriminator`) is the usual first GAN of a PyTorch course: Linear layers on
flattened pixels, LeakyReLU(0.2), BatchNorm in G's hidden layers but its first, tanh output; no convolutions.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["IMAGE_SIZES", "Generator", "Discriminator", "dcgan_init", "stages_for", "generate_batches",
           "MLPGenerator", "MLPDiscriminator", "ARCHITECTURES", "make_generator", "make_gan", "generate_samples"]

ARCHITECTURES = ("dcgan", "mlp")

IMAGE_SIZES = (28, 32, 64)  # 28: the bundled Fashion-MNIST; 32 and 64: a user's images, resized


def stages_for(image_size: int) -> int:
    """Stride-2 stages between the base grid and the image: 28 → 7 and 32 → 8 take two, 64 → 8 three."""
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image size {image_size}: allowed {', '.join(map(str, IMAGE_SIZES))}")
    return 3 if image_size == 64 else 2


class Generator(nn.Module):
    """z (N, latent) → Linear → (2^s·w, base, base) → s ConvT stages, halving channels → (channels, size, size).

    At 28 pixels: (4w, 7, 7) → (2w, 14, 14) → (1, 28, 28) in [-1, 1]."""

    def __init__(self, latent_dim: int = 64, width: int = 16, image_size: int = 28, channels: int = 1) -> None:
        super().__init__()
        stages = stages_for(image_size)
        self.latent_dim, self.width = latent_dim, width
        self.base, self.top = image_size >> stages, width << stages
        cells = self.top * self.base * self.base
        self.project = nn.Sequential(nn.Linear(latent_dim, cells, bias=False), nn.BatchNorm1d(cells), nn.ReLU())
        layers: list[nn.Module] = []
        for stage in range(stages - 1):
            c = self.top >> stage
            layers += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1, bias=False),  # doubles the grid
                       nn.BatchNorm2d(c // 2), nn.ReLU()]
        layers += [nn.ConvTranspose2d(2 * width, channels, 4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z).view(len(z), self.top, self.base, self.base))


class Discriminator(nn.Module):
    """(N, channels, size, size) → s Conv stages, doubling channels → (2^s·w, base, base) → Linear → one logit.

    At 28 pixels: (1, 28, 28) → (2w, 14, 14) → (4w, 7, 7) → 1. It returns logits, not probabilities:
    `binary_cross_entropy_with_logits` is the numerically safe form of the seed's "cross-entropy" (log-sigmoid
    never rounds to log 0).
    """

    def __init__(self, width: int = 16, image_size: int = 28, channels: int = 1) -> None:
        super().__init__()
        stages = stages_for(image_size)
        base = image_size >> stages
        layers: list[nn.Module] = [nn.Conv2d(channels, 2 * width, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2)]  # no BN on the input layer
        for stage in range(1, stages):
            c = width << stage
            layers += [nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * c),
                       nn.LeakyReLU(0.2)]
        layers += [nn.Flatten(), nn.Linear((width << stages) * base * base, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class MLPGenerator(nn.Module):
    """z (N, latent) → w → 2w → 4w → 8w hidden units → (channels, size, size) in [-1, 1].

    At w = 128 these are the widths of the common PyTorch MLP GAN (128, 256, 512, 1024)."""

    def __init__(self, latent_dim: int = 64, width: int = 128, image_size: int = 28, channels: int = 1) -> None:
        super().__init__()
        self.latent_dim, self.shape = latent_dim, (channels, image_size, image_size)
        layers: list[nn.Module] = [nn.Linear(latent_dim, width), nn.LeakyReLU(0.2)]  # no BN on the first layer
        for c in (width, 2 * width, 4 * width):
            layers += [nn.Linear(c, 2 * c), nn.BatchNorm1d(2 * c), nn.LeakyReLU(0.2)]
        layers += [nn.Linear(8 * width, channels * image_size * image_size), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(len(z), *self.shape)


class MLPDiscriminator(nn.Module):
    """(N, channels, size, size) flattened → 4w → 2w hidden units → one logit."""

    def __init__(self, width: int = 128, image_size: int = 28, channels: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size * image_size, 4 * width),
                                 nn.LeakyReLU(0.2), nn.Linear(4 * width, 2 * width), nn.LeakyReLU(0.2),
                                 nn.Linear(2 * width, 1))

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


def make_generator(architecture: str, latent_dim: int, width: int, image_size: int = 28,
                   channels: int = 1) -> Generator | MLPGenerator:
    """An untrained G of one of ARCHITECTURES (PyTorch's default initialisation)."""
    if architecture == "mlp":
        return MLPGenerator(latent_dim, width, image_size, channels)
    return Generator(latent_dim, width, image_size, channels)


def make_gan(architecture: str, latent_dim: int, g_width: int, d_width: int, image_size: int = 28,
             channels: int = 1) -> tuple[nn.Module, nn.Module]:
    """G and D of one of ARCHITECTURES, initialised as usual for it: the DCGAN's N(0, 0.02) (`dcgan_init`), the MLP
    GAN's PyTorch default. Both draw from the global RNG: seed it first."""
    g = make_generator(architecture, latent_dim, g_width, image_size, channels)
    if architecture == "mlp":
        return g, MLPDiscriminator(d_width, image_size, channels)
    d = Discriminator(d_width, image_size, channels)
    g.apply(dcgan_init)
    d.apply(dcgan_init)
    return g, d


@torch.no_grad()
def generate_batches(g: Generator | MLPGenerator, n: int, seed: int, device: torch.device,
                     batch: int = 1000) -> Iterator[torch.Tensor]:
    """n samples in [0, 1], `batch` at a time, from G in eval mode (BN running statistics) and a noise stream of
    their own (seeded: the global RNG is untouched). G is back in its own mode after the last batch."""
    gen = torch.Generator().manual_seed(seed)
    mode = g.training
    g.eval()
    try:
        for i in range(0, n, batch):
            z = torch.randn(min(batch, n - i), g.latent_dim, generator=gen)
            yield ((g(z.to(device)).float().cpu() + 1) / 2).clamp(0, 1)
    finally:
        g.train(mode)


def generate_samples(g: Generator | MLPGenerator, n: int, seed: int, device: torch.device) -> torch.Tensor:
    """n samples in [0, 1] from G in eval mode, from a noise stream of their own (`generate_batches`, concatenated)."""
    return torch.cat(list(generate_batches(g, n, seed, device)))

"""Autoencoders for images in [0, 1]: the seed's MLP, an MLP with a wider code, a convolutional AE, and two VAEs.

`SeedAutoEncoder` is the seed's model exactly (784-128-64-12-3, ReLU, sigmoid output); it and `MLPAutoEncoder`
(the seed's layout with a code of any size) take flattened images (N, 784), or (N, pixels) for other image sizes.
The others take (N, channels, size, size) for 28×28 (the bundled Fashion-MNIST), 32×32 or 64×64 images, grey or
RGB: the conv models use stride-2 convolutions down to a 7×7 or 8×8 grid (two stages, three for 64 pixels), as
`nn.gan.stages_for` says; `MLPVAE` is Kingma & Welling's one-hidden-layer VAE on the flattened image. Every model
has `encode(x)`, the code used for k-NN and plots (for a VAE: the posterior mean), and `reconstruct(x)`, its
deterministic reconstruction of images shaped as x.
"""

from __future__ import annotations

import torch
from torch import nn

from torch_cookbook.nn.gan import stages_for

__all__ = ["SeedAutoEncoder", "MLPAutoEncoder", "ConvAutoEncoder", "VAE", "MLPVAE", "kl_divergence"]


class SeedAutoEncoder(nn.Module):
    """The seed's autoencoder, layer for layer: a 3-D linear code, a sigmoid output in [0, 1]."""

    def __init__(self, pixels: int = 28 * 28) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(pixels, 128), nn.ReLU(),
            nn.Linear(128, 64), nn.ReLU(),
            nn.Linear(64, 12), nn.ReLU(),
            nn.Linear(12, 3),
        )
        self.decoder = nn.Sequential(
            nn.Linear(3, 12), nn.ReLU(),
            nn.Linear(12, 64), nn.ReLU(),
            nn.Linear(64, 128), nn.ReLU(),
            nn.Linear(128, pixels), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(x)
        decoded = self.decoder(encoded)
        return decoded

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self(x.flatten(1)).view_as(x)


class MLPAutoEncoder(nn.Module):
    """The seed's MLP with a `latent`-sized code: pixels-128-64-latent and its mirror (no 12-unit layer, which
    would be narrower than the code), linear code, sigmoid output. The control for a conv AE with the same code."""

    def __init__(self, latent: int = 32, pixels: int = 28 * 28) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(pixels, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                     nn.Linear(64, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, 64), nn.ReLU(), nn.Linear(64, 128), nn.ReLU(),
                                     nn.Linear(128, pixels), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self(x.flatten(1)).view_as(x)


def _conv_encoder(width: int, image_size: int, channels: int) -> tuple[nn.Sequential, int]:
    """Stride-2 3×3 convolutions, doubling the channels (28 → 14 → 7 at two stages), flattened; and its width."""
    stages = stages_for(image_size)
    layers: list[nn.Module] = []
    for stage in range(stages):
        layers += [nn.Conv2d(channels if stage == 0 else width << (stage - 1), width << stage, 3, stride=2,
                             padding=1), nn.ReLU()]
    base = image_size >> stages
    return nn.Sequential(*layers, nn.Flatten()), (width << (stages - 1)) * base * base


def _conv_decoder(latent: int, width: int, image_size: int, channels: int) -> nn.Sequential:
    """The encoder's mirror: Linear to the base grid, stride-2 transposed convolutions back (7 → 14 → 28), logits."""
    stages = stages_for(image_size)
    base, top = image_size >> stages, width << (stages - 1)
    layers: list[nn.Module] = [nn.Linear(latent, top * base * base), nn.ReLU(), nn.Unflatten(1, (top, base, base))]
    for stage in range(stages - 1, 0, -1):
        layers += [nn.ConvTranspose2d(width << stage, width << (stage - 1), 4, stride=2, padding=1), nn.ReLU()]
    layers.append(nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1))  # logits
    return nn.Sequential(*layers)


class ConvAutoEncoder(nn.Module):
    """Strided convolutions down to a `latent`-sized code, transposed convolutions back; sigmoid output."""

    def __init__(self, latent: int = 32, width: int = 16, image_size: int = 28, channels: int = 1) -> None:
        super().__init__()
        trunk, features = _conv_encoder(width, image_size, channels)
        self.encoder = nn.Sequential(trunk, nn.Linear(features, latent))
        self.decoder = _conv_decoder(latent, width, image_size, channels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


class _GaussianVAE(nn.Module):
    """What both VAEs share: q(z|x) = N(mu, diag(exp(logvar))) from `posterior`, prior N(0, I), and a Bernoulli
    decoder `decode(z)` giving logits shaped as the images. Subclasses set `latent` and those two methods."""

    latent: int

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, mu, logvar) for one z ~ q(z|x); `eps` (N, latent) fixes the noise, e.g. for a seeded ELBO."""
        mu, logvar = self.posterior(x)
        # Reparameterisation: z = mu + sigma * eps keeps the sample differentiable in mu and sigma.
        z = mu + torch.exp(0.5 * logvar) * (torch.randn_like(mu) if eps is None else eps)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [0, 1] decoded from z ~ N(0, I) (the decoder's mean, not a Bernoulli draw)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent, generator=generator).to(device)
        return torch.sigmoid(self.decode(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: the deterministic reconstruction used for test MSE."""
        return torch.sigmoid(self.decode(self.encode(x)))


class VAE(_GaussianVAE):
    """Convolutional VAE: the conv AE's encoder and decoder around a `latent`-dimensional Gaussian code."""

    def __init__(self, latent: int = 16, width: int = 16, image_size: int = 28, channels: int = 1) -> None:
        super().__init__()
        self.latent = latent
        self.trunk, features = _conv_encoder(width, image_size, channels)
        self.to_stats = nn.Linear(features, 2 * latent)
        self.decoder = _conv_decoder(latent, width, image_size, channels)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.trunk(x)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


class MLPVAE(_GaussianVAE):
    """Kingma & Welling's MNIST VAE (2014): pixels-400-(mu, logvar) of `latent`, latent-400-pixels logits, one
    hidden layer each way. ReLU where the paper has tanh, as in pytorch/examples' VAE (trained with Adam)."""

    def __init__(self, latent: int = 20, hidden: int = 400, image_size: int = 28, channels: int = 1) -> None:
        super().__init__()
        self.latent, self.shape = latent, (channels, image_size, image_size)
        pixels = channels * image_size * image_size
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels),
                                     nn.Unflatten(1, self.shape))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per example, in closed form: -½ Σ (1 + logvar - mu² - exp(logvar))."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)

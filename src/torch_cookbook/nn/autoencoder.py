"""Autoencoders for 28×28 greyscale images in [0, 1]: the seed's MLP, a convolutional AE, and a VAE.

`SeedAutoEncoder` is the seed's model exactly (784-128-64-12-3, ReLU, sigmoid output); it takes
flattened images (N, 784). The others take (N, 1, 28, 28). Every model has `encode(x)` giving the code
used for k-NN and plots (for the VAE: the posterior mean).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SeedAutoEncoder", "ConvAutoEncoder", "VAE", "kl_divergence"]


class SeedAutoEncoder(nn.Module):
    """The seed's autoencoder, layer for layer: a 3-D linear code, a sigmoid output in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(28 * 28, 128), nn.ReLU(),
            nn.Linear(128, 64), nn.ReLU(),
            nn.Linear(64, 12), nn.ReLU(),
            nn.Linear(12, 3),
        )
        self.decoder = nn.Sequential(
            nn.Linear(3, 12), nn.ReLU(),
            nn.Linear(12, 64), nn.ReLU(),
            nn.Linear(64, 128), nn.ReLU(),
            nn.Linear(128, 28 * 28), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(x)
        decoded = self.decoder(encoded)
        return decoded


def _conv_encoder(width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(),  # 28 → 14
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),  # 14 → 7
        nn.Flatten(),
    )


def _conv_decoder(latent: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(latent, 2 * width * 7 * 7), nn.ReLU(),
        nn.Unflatten(1, (2 * width, 7, 7)),
        nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),  # 7 → 14
        nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),  # 14 → 28, logits
    )


class ConvAutoEncoder(nn.Module):
    """Strided convolutions down to a `latent`-sized code, transposed convolutions back; sigmoid output."""

    def __init__(self, latent: int = 32, width: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(_conv_encoder(width), nn.Linear(2 * width * 7 * 7, latent))
        self.decoder = _conv_decoder(latent, width)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x)))


class VAE(nn.Module):
    """Variational AE: q(z|x) = N(mu, diag(exp(logvar))), prior N(0, I), Bernoulli decoder (returns logits)."""

    def __init__(self, latent: int = 16, width: int = 16) -> None:
        super().__init__()
        self.latent = latent
        self.trunk = _conv_encoder(width)
        self.to_stats = nn.Linear(2 * width * 7 * 7, 2 * latent)
        self.decoder = _conv_decoder(latent, width)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.trunk(x)).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.posterior(x)
        # Reparameterisation: z = mu + sigma * eps keeps the sample differentiable in mu and sigma.
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [0, 1] decoded from z ~ N(0, I) (the decoder's mean, not a Bernoulli draw)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent, generator=generator).to(device)
        return torch.sigmoid(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: the deterministic reconstruction used for test MSE."""
        return torch.sigmoid(self.decoder(self.encode(x)))


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per example, in closed form: -½ Σ (1 + logvar - mu² - exp(logvar))."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


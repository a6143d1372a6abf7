"""The multilayer perceptron the image recipes share: Linear-ReLU layers, a linear output."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["make_mlp"]


def make_mlp(sizes: Sequence[int], flatten: bool = True) -> nn.Sequential:
    """Linear → ReLU through `sizes` = (inputs, hidden..., outputs), no activation after the last layer.

    `flatten` puts an nn.Flatten first, so N×1×28×28 images go in as they are.
    """
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)

"""Neural style transfer pieces (Gatys, Ecker & Bethge 2016): VGG-16 feature taps, Gram matrices, the losses.

    feats = VGGFeatures(state_dict, taps=["relu1_1", "relu4_2"], input_mode="bgr255")
    out = feats(image)                 # image: (B, 3, H, W) RGB in [0, 1] → {"relu1_1": ..., "relu4_2": ...}
    g = gram_matrix(out["relu1_1"])    # (B, C, C): channel correlations, the "style" of a layer
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VGG16_LAYERS", "VGGFeatures", "content_loss", "gram_matrix", "make_vgg16_features", "style_loss",
           "total_variation"]

# torchvision's vgg16().features, layer by layer: the name of each index (conv, relu, pool).
_BLOCKS = (2, 2, 3, 3, 3)
VGG16_LAYERS: list[str] = []
for _b, _n in enumerate(_BLOCKS, start=1):
    for _i in range(1, _n + 1):
        VGG16_LAYERS += [f"conv{_b}_{_i}", f"relu{_b}_{_i}"]
    VGG16_LAYERS.append(f"pool{_b}")
_WIDTHS = (64, 128, 256, 512, 512)


def make_vgg16_features() -> nn.Sequential:
    """The same layers and indices as torchvision's `vgg16().features`, without building the classifier."""
    layers: list[nn.Module] = []
    cin = 3
    for n, cout in zip(_BLOCKS, _WIDTHS):
        for _ in range(n):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=False)]
            cin = cout
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G[c, d] = Σ_hw F[c, hw] F[d, hw] / (C·H·W) for features (B, C, H, W); returns (B, C, C).

    Dividing by C·H·W makes layers of different size comparable and the style loss independent of image size.
    """
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of feature maps: what is where in the image."""
    return F.mse_loss(features, target)


def style_loss(grams: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
               weights: dict[str, float] | None = None) -> torch.Tensor:
    """Weighted sum over layers of the squared Frobenius distance between Gram matrices (summed over C×C)."""
    total = torch.zeros((), device=next(iter(grams.values())).device)
    for name, g in grams.items():
        w = 1.0 if weights is None else weights[name]
        total = total + w * (g - targets[name]).pow(2).sum(dim=(-2, -1)).mean()
    return total


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels: penalises high-frequency noise."""
    dh = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
    dw = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean()
    return dh + dw


class VGGFeatures(nn.Module):
    """Frozen VGG-16 up to the deepest requested tap; returns the named activations for an RGB [0, 1] image.

    `input_mode` is how the weights expect their input: 'bgr255' (Caffe/HED: BGR, 0-255, minus a mean) or
    'imagenet' (torchvision: RGB, 0-1, standardised). The conversion happens here, so callers always pass RGB.
    """

    def __init__(self, state_dict: dict[str, torch.Tensor], taps: list[str], input_mode: str = "bgr255",
                 mean: tuple[float, float, float] = (104.00699, 116.66877, 122.67892),
                 std: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        super().__init__()
        unknown = [t for t in taps if t not in VGG16_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG-16 layers {unknown}; known: {', '.join(VGG16_LAYERS)}")
        if input_mode not in ("bgr255", "imagenet"):
            raise ValueError(f"input_mode must be bgr255 or imagenet, not {input_mode!r}")
        full = make_vgg16_features()
        full.load_state_dict(state_dict)
        self.index = {t: VGG16_LAYERS.index(t) for t in taps}
        self.layers = full[:max(self.index.values()) + 1]
        self.layers.eval()
        self.layers.requires_grad_(False)
        self.input_mode = input_mode
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        if self.input_mode == "bgr255":
            return image.flip(1) * 255.0 - self.mean  # RGB → BGR, 0-1 → 0-255, minus the (BGR) mean
        return (image - self.mean) / self.std

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess(image)
        wanted = {i: t for t, i in self.index.items()}
        out = {}
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out

"""UNet (Ronneberger, Fischer & Brox 2015): an encoder-decoder whose decoder sees the encoder's feature maps.

    model = UNet(in_channels=3, num_classes=11, width=32, depth=4)
    logits = model(x)          # x: (B, 3, H, W) → (B, 11, H, W), any H, W ≥ 2**depth, odd sizes included

Each encoder level halves the resolution and doubles the channels; each decoder level upsamples, concatenates
the encoder map of the same resolution (the skip connection: fine detail that the bottleneck lost) and
convolves. Padded 3×3 convolutions keep sizes, so the output has the input's size; odd sizes are handled by
padding each upsampled map to its skip's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "dice_loss", "DoubleConv", "Up"]


class DoubleConv(nn.Sequential):
    """(3×3 conv → BatchNorm → ReLU) × 2; the conv bias is dropped because BatchNorm's shift replaces it."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Up(nn.Module):
    """Upsample ×2 with a transposed conv, pad to the skip's size, concatenate, DoubleConv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]  # 0 or 1 (odd input sizes)
        x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """`depth` down/up levels; level i has width·2^i channels. Output: per-pixel class logits at input size."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be ≥ 1, got depth={depth}, width={width}")
        self.depth = depth
        widths = [width * 2 ** i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[i], widths[i + 1]))
                                   for i in range(depth))
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    @property
    def min_size(self) -> int:
        """The smallest input side: every pooling must leave at least one pixel."""
        return 2 ** self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"input {tuple(x.shape[-2:])} is smaller than {self.min_size}×{self.min_size}, "
                             f"the minimum for depth {self.depth}")
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − mean over classes of the soft Dice 2|P∩T| / (|P| + |T|), from softmax probabilities.

    Unlike cross-entropy, Dice weighs each class by its own size, so small objects count as much as the
    background. `eps` smooths classes absent from the batch (their Dice is then 1, not 0/0).
    """
    probs = logits.float().softmax(dim=1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * intersection + eps) / (total + eps)).mean()

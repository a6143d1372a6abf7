"""UNet (Ronneberger, Fischer & Brox 2015): an encoder-decoder whose decoder sees the encoder's feature maps.

    model = UNet(in_channels=3, num_classes=11, width=32, depth=4)
    logits = model(x)          # x: (B, 3, H, W) → (B, 11, H, W), any H, W ≥ 2**depth, odd sizes included

Each encoder level halves the resolution and doubles the channels; each decoder level upsamples, concatenates
the encoder map of the same resolution (the skip connection: fine detail that the bottleneck lost) and
convolves. Padded 3×3 convolutions keep sizes, so the output has the input's size; odd sizes are handled by
padding each upsampled map to its skip's size.

    confusion = confusion_matrix(pred, truth, 11)   # sum it over images of any sizes
    overlap_scores(confusion)  # per-class IoU, mean IoU, pixel accuracy, foreground Dice
    overlap_scores(otsu_confusion(zip(images, masks)))  # the same for Otsu's threshold, foreground vs background
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "dice_loss", "DoubleConv", "Up", "confusion_matrix", "overlap_scores",
           "otsu_confusion"]


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


def confusion_matrix(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 (K, K): entry [t, p] counts the pixels of true class t predicted as p."""
    flat = truth.flatten() * num_classes + pred.flatten()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def overlap_scores(confusion: torch.Tensor) -> dict[str, torch.Tensor | float | None]:
    """From a confusion matrix (summed over any number of images), in float64: `iou` per class (NaN for a class
    neither true nor predicted anywhere), `mean_iou` over the other classes, `pixel_accuracy`, and `fg_dice`, the
    Dice 2TP / (2TP + FP + FN) of foreground (any class > 0) vs background (None if neither has foreground)."""
    c = confusion.double()
    tp = c.diag()
    union = c.sum(0) + c.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.nan)
    fg_tp2, fg_errors = 2 * c[1:, 1:].sum(), c[0, 1:].sum() + c[1:, 0].sum()
    return {"iou": iou, "mean_iou": iou[union > 0].mean().item(), "pixel_accuracy": (tp.sum() / c.sum()).item(),
            "fg_dice": (fg_tp2 / (fg_tp2 + fg_errors)).item() if fg_tp2 + fg_errors > 0 else None}


def otsu_confusion(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The classical baseline: Otsu's threshold (scikit-image) on each grey image of (image (3, H, W), mask (H, W))
    pairs, as a 2×2 confusion matrix of background vs foreground (class > 0), summed over the images. Per image,
    the polarity (objects brighter or darker than the threshold) that matches the truth better is used: an oracle
    choice that flatters the baseline."""
    from skimage.filters import threshold_otsu

    tp = fp = fn = tn = 0
    for img, mask in pairs:
        grey = img.mean(0).numpy()
        fg_true = mask.numpy() > 0
        above = grey > threshold_otsu(grey)
        best = None
        for fg in (above, ~above):
            counts = ((fg & fg_true).sum(), (fg & ~fg_true).sum(), (~fg & fg_true).sum(), (~fg & ~fg_true).sum())
            dice = 2 * counts[0] / max(2 * counts[0] + counts[1] + counts[2], 1)
            if best is None or dice > best[0]:
                best = (dice, counts)
        tp, fp, fn, tn = tp + best[1][0], fp + best[1][1], fn + best[1][2], tn + best[1][3]
    return torch.tensor([[tn, fp], [fn, tp]], dtype=torch.int64)

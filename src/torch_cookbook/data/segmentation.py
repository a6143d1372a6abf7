"""A segmentation set with exact masks, built reproducibly from data that ships offline.

No image+mask dataset can be loaded offline, so we compose one: Fashion-MNIST items (MIT; their pixels give
exact masks) are scaled, tinted and pasted, possibly overlapping, on real texture backgrounds cropped from
scikit-image's bundled photos (brick, grass, gravel, camera: greyscale; coffee, chelsea, astronaut, rocket,
immunohistochemistry, hubble_deep_field, china, flower: colour), then Gaussian noise is added.

    classes: 0 = background, 1 + k = Fashion-MNIST class k (T-shirt/top ... Ankle boot) → 11 classes
    mask of an item: its pixels brighter than MASK_LEVEL (after scaling); later items occlude earlier ones
    train: items from Fashion-MNIST train, crops from the left 3/4 of each photo
    test:  items from Fashion-MNIST test,  crops from the right 1/4 of each photo  (no item or pixel is shared)
    val:   composed like train (its items and crops) with another generator seed: for choosing settings
           without looking at the test set (it can share items and photo regions with train, so it flatters
           the model slightly, like a training-set score would; it ranks settings, it is not the result)

Everything random comes from one fixed generator seed per split, so the set is the same on every machine;
the result is cached under ~/.cache/torch-cookbook keyed by the settings and the Fashion-MNIST checksums.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from torch_cookbook.data import fashion_mnist, images
from torch_cookbook.data.cache import load_cached, store_cached

CLASSES = ("background",) + fashion_mnist.CLASSES
BACKGROUNDS = ("brick", "grass", "gravel", "camera", "coffee", "chelsea", "astronaut", "rocket",
               "immunohistochemistry", "hubble_deep_field", "china", "flower")
MASK_LEVEL = 0.1  # an item pixel belongs to the item when its intensity (0-1) is above this
VERSION = 1  # bump when the composition below changes: the cache key includes it


@dataclass
class SegmentationSet:
    """float images (N, 3, S, S) in [0, 1] and int64 masks (N, S, S) with values 0..10."""

    images: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def head(self, n: int) -> SegmentationSet:
        return SegmentationSet(self.images[:n], self.masks[:n])

    def pairs(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return zip(self.images, self.masks)

    def pixel_counts(self, num_classes: int) -> torch.Tensor:
        return torch.bincount(self.masks.flatten(), minlength=num_classes)


def _background_bank(test: bool) -> list[torch.Tensor]:
    """Each photo as (3, H, W) in [0, 1], keeping the left 3/4 (train) or the right 1/4 (test)."""
    bank = []
    for name in BACKGROUNDS:
        photo = images.to_tensor(images.bundled_array(name))
        w = photo.shape[-1]
        cut = w * 3 // 4
        bank.append(photo[..., cut:] if test else photo[..., :cut])
    return bank


def _crop(photo: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A random square crop of 1-2× `size` from `photo`, resized to size × size, randomly flipped and tinted."""
    _, h, w = photo.shape
    side = int(min(h, w, rng.integers(size, 2 * size + 1)))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = photo[:, top:top + side, left:left + side].unsqueeze(0)
    crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    if rng.random() < 0.5:
        crop = crop.flip(-1)
    tint = torch.from_numpy(rng.uniform(0.7, 1.3, size=3)).float().view(3, 1, 1)
    return (crop * tint).clamp(0, 1)


def compose(items: torch.Tensor, labels: torch.Tensor, n: int, size: int, max_items: int, seed: int,
            test: bool, noise: float = 0.04) -> SegmentationSet:
    """`n` images of size × size with 1..max_items items each, drawn from (items uint8 (M, 28, 28), labels)."""
    rng = np.random.default_rng(seed)
    bank = _background_bank(test)
    out_images = torch.empty(n, 3, size, size)
    out_masks = torch.zeros(n, size, size, dtype=torch.int64)
    for i in range(n):
        canvas = _crop(bank[rng.integers(len(bank))], size, rng)
        mask = torch.zeros(size, size, dtype=torch.int64)
        for _ in range(rng.integers(1, max_items + 1)):
            k = int(rng.integers(len(items)))
            side = int(rng.integers(size * 7 // 16, size * 11 // 16 + 1))  # 21..33 px in a 48 px image
            item = items[k].float().div(255.0).view(1, 1, 28, 28)
            item = F.interpolate(item, size=(side, side), mode="bilinear", align_corners=False)[0, 0]
            top, left = rng.integers(0, size - side + 1), rng.integers(0, size - side + 1)
            inside = item > MASK_LEVEL
            # Item appearance: its own shading times a random colour, so class is told by shape, not colour.
            colour = torch.from_numpy(rng.uniform(0.15, 1.0, size=3)).float().view(3, 1, 1)
            region = canvas[:, top:top + side, left:left + side]
            region[:, inside] = (item * colour)[:, inside]
            mask[top:top + side, left:left + side][inside] = int(labels[k]) + 1
        canvas = canvas + noise * torch.from_numpy(rng.standard_normal((3, size, size))).float()
        out_images[i] = canvas.clamp(0, 1)
        out_masks[i] = mask
    return SegmentationSet(out_images, out_masks)


def load(n_train: int = 6000, n_test: int = 1000, size: int = 48, max_items: int = 3) -> tuple[SegmentationSet,
                                                                                              SegmentationSet]:
    """(train, test) segmentation sets; built once per setting (seconds) and cached."""
    key = f"v{VERSION}:{n_train}:{n_test}:{size}:{max_items}:{fashion_mnist.SOURCE_KEY}"
    name = f"segmentation_{size}_{n_train}_{n_test}_{max_items}"
    cached = load_cached(name, key)
    if cached is None:
        fm = fashion_mnist.load()
        train = compose(fm.train_images, fm.train_labels, n_train, size, max_items, seed=1, test=False)
        test = compose(fm.test_images, fm.test_labels, n_test, size, max_items, seed=2, test=True)
        # Images are stored as uint8 to keep the cache small; masks as uint8 (11 classes).
        cached = {"train_images": (train.images * 255).round().to(torch.uint8), "train_masks": train.masks.byte(),
                  "test_images": (test.images * 255).round().to(torch.uint8), "test_masks": test.masks.byte()}
        store_cached(name, key, cached)
    as_set = [SegmentationSet(cached[f"{s}_images"].float().div(255.0), cached[f"{s}_masks"].long())
              for s in ("train", "test")]
    return as_set[0], as_set[1]


VAL_SEED = 3  # train uses seed 1, test seed 2


def load_validation(n: int = 500, size: int = 48, max_items: int = 3) -> SegmentationSet:
    """`n` validation scenes composed like the training set (train items and crops) with seed VAL_SEED; cached."""
    key = f"v{VERSION}:val{VAL_SEED}:{n}:{size}:{max_items}:{fashion_mnist.SOURCE_KEY}"
    name = f"segmentation_val_{size}_{n}_{max_items}"
    cached = load_cached(name, key)
    if cached is None:
        fm = fashion_mnist.load()
        val = compose(fm.train_images, fm.train_labels, n, size, max_items, seed=VAL_SEED, test=False)
        cached = {"images": (val.images * 255).round().to(torch.uint8), "masks": val.masks.byte()}
        store_cached(name, key, cached)
    return SegmentationSet(cached["images"].float().div(255.0), cached["masks"].long())

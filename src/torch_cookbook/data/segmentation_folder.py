"""Your own segmentation data for the unet recipe: DIR/images/ and DIR/masks/, paired by file stem.

Files      `userdata.image_mask_pairs` pairs images/NAME.* with masks/NAME.*; an image is any file PIL reads, grey
           or RGB, any size; its mask is a single-channel PNG of the image's size whose values are class indices.
Classes    K = the largest mask value + 1 over all masks (at most 256). Every class 0..K-1 must appear in a
           training mask: a gap (a 0/255 mask has no classes 1..254) or a class seen only in val or test is refused.
Scale      each image is resized so that its short side is `size` pixels, aspect kept (antialiased bilinear), its
           mask likewise by nearest neighbour; both are kept as uint8. Memory holds the resized pairs, about
           4·size²·(long side / short side) bytes each, and one decoded original at a time.
Split      seeded (`userdata.stratified_split`), stratified by the rarest class each mask holds (the class found in
           the fewest masks), so a rare class lands in train first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from torch_cookbook.data import userdata
from torch_cookbook.errors import DataError

MAX_CLASSES = 256  # masks are kept as uint8
SPLITS = ("train", "val", "test")


def resize_short_side(array: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """uint8 (H, W[, 3]) resized so that min(H, W) == size, aspect kept: bilinear (antialiased when shrinking, as
    PIL does), or nearest neighbour for masks, whose values are classes and must not be blended."""
    from PIL import Image

    h, w = array.shape[:2]
    scale = size / min(h, w)
    shape = (max(size, round(w * scale)), max(size, round(h * scale)))  # PIL takes (width, height)
    resample = Image.NEAREST if nearest else Image.BILINEAR
    return np.array(Image.fromarray(np.ascontiguousarray(array)).resize(shape, resample))  # a writable copy


def to_scale(image: torch.Tensor, size: int) -> torch.Tensor:
    """A float image (3, H, W) in [0, 1] resized as training resized its images (`resize_short_side` on uint8)."""
    as_uint8 = image.mul(255).round().byte().permute(1, 2, 0).numpy()
    return torch.from_numpy(resize_short_side(as_uint8, size).transpose(2, 0, 1)).float().div_(255.0)


@dataclass
class MaskedImages:
    """Resized pairs: images uint8 (3, h, w) and masks uint8 (h, w), sizes differing from pair to pair."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    files: list[Path]  # each pair's image file

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: Sequence[int]) -> MaskedImages:
        return MaskedImages([self.images[i] for i in idx], [self.masks[i] for i in idx], [self.files[i] for i in idx])

    def head(self, n: int) -> MaskedImages:
        return self.subset(range(min(n, len(self))))

    def pairs(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(float image (3, h, w) in [0, 1], int64 mask (h, w)), one pair at a time."""
        for image, mask in zip(self.images, self.masks):
            yield torch.from_numpy(image).float().div_(255.0), torch.from_numpy(mask).long()

    def pixel_counts(self, num_classes: int) -> torch.Tensor:
        return sum(torch.bincount(torch.from_numpy(m).flatten(), minlength=num_classes) for m in self.masks)

    def crops(self, idx: Sequence[int], size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A size × size window of each image in `idx` and of its mask, placed by `rng`: (float x, int64 y)."""
        x = np.empty((len(idx), 3, size, size), dtype=np.uint8)
        y = np.empty((len(idx), size, size), dtype=np.uint8)
        for j, i in enumerate(idx):
            _, h, w = self.images[i].shape
            top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            x[j] = self.images[i][:, top:top + size, left:left + size]
            y[j] = self.masks[i][top:top + size, left:left + size]
        return torch.from_numpy(x).float().div_(255.0), torch.from_numpy(y).long()


@dataclass
class SegmentationFolder:
    source: Path
    pairs: MaskedImages  # every pair, in sorted stem order
    num_classes: int
    split: tuple[np.ndarray, np.ndarray, np.ndarray]  # indices of train, val, test

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(f"class_{k}" for k in range(self.num_classes))

    def part(self, name: str) -> MaskedImages:
        return self.pairs.subset(self.split[SPLITS.index(name)])


def read_folder(path: str | Path, size: int, seed: int, val_fraction: float,
                test_fraction: float) -> SegmentationFolder:
    """Read, check, resize and split DIR/images + DIR/masks in one pass over the files; every mistake is one
    `DataError` line naming the file."""
    root = Path(path)
    files = userdata.image_mask_pairs(root)
    if len(files) < 3:
        raise DataError(f"{root}: {len(files)} image/mask pair{'s' * (len(files) != 1)}; a train/val/test split "
                        f"needs at least 3")
    images, masks, present = [], [], []
    for image_file, mask_file in files:
        image = userdata.read_image(image_file, "RGB")
        mask = userdata.read_mask(mask_file, image.shape[:2], MAX_CLASSES)
        present.append(np.flatnonzero(np.bincount(mask.ravel())))  # the classes in this mask
        images.append(resize_short_side(image, size).transpose(2, 0, 1))
        masks.append(resize_short_side(mask.astype(np.uint8), size, nearest=True))
    num_classes = max(int(p[-1]) for p in present) + 1
    masks_dir = root / "masks"
    if num_classes == 1:
        raise DataError(f"{masks_dir}: every mask is all 0 (one class, {len(files)} masks); a segmentation needs "
                        f"two classes or more")
    in_masks = np.zeros(num_classes, dtype=np.int64)  # how many masks hold each class
    for p in present:
        in_masks[p] += 1
    if (in_masks == 0).any():
        gap, seen = int(np.flatnonzero(in_masks == 0)[0]), np.flatnonzero(in_masks).tolist()
        raise DataError(f"{masks_dir}: class {gap} is in no mask, but values go up to {num_classes - 1} (seen: "
                        f"{', '.join(map(str, seen[:12]))}); mask values are class indices 0..K-1 without gaps "
                        f"(save a 0/255 mask as 0/1)")
    rarest = np.array([min(p, key=lambda c: (in_masks[c], c)) for p in present])
    split = userdata.stratified_split(rarest, seed, val_fraction, test_fraction)
    for name, idx in sorted(zip(SPLITS, split), key=lambda part: part[0] == "val"):  # a missing test split first
        if len(idx) == 0:
            raise DataError(f"{root}: the split (--val_fraction {val_fraction}, --test_fraction {test_fraction}) "
                            f"leaves no {name} pairs; {len(files)} pairs in all")
    trained = set(np.concatenate([present[i] for i in split[0]]).tolist())
    for name, idx in zip(SPLITS[1:], split[1:]):
        for i in idx:
            unseen = sorted(set(present[i].tolist()) - trained)
            if unseen:
                raise DataError(f"{files[i][1]}: class {unseen[0]} is in the {name} split but in no training mask; "
                                f"give it training images or leave it out")
    return SegmentationFolder(root, MaskedImages(images, masks, [f for f, _ in files]), num_classes, split)

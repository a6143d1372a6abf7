"""The target task of transfer learning: the 5,000 bundled MNIST digits (`mnist_digits`), or a user's class folders
of images (`--data DIR`), as uint8 images at the backbone's input size with their splits.

Class folders: DIR/CLASS/IMAGE (any size, grey or RGB, `userdata.IMAGE_EXTENSIONS`), split into val and test shares of
each class by a fixed seed (the same for every --seed, like the digits' fixed test set); or DIR/train/CLASS/IMAGE,
DIR/test/CLASS/IMAGE and optionally DIR/val/CLASS/IMAGE (without val/, a share of train is held out). The labelled
training images (`per_class` of each class) are drawn by --seed from the rest, nested across label budgets.
Only the images a run uses are decoded: the draw for the largest budget, val and test, one file at a time, into
uint8 (N, C, S, S), N·C·S² bytes. `to_input` scales a batch for the backbone when it is used.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torch_cookbook.data import fashion_mnist, mnist_digits, userdata
from torch_cookbook.data.images import load_image, read_file
from torch_cookbook.errors import DataError

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's statistics: ResNet-18's input scale, so its source features apply
SPLIT_SEED = 20_000  # the val/test split of a user's images, whatever --seed draws the labelled ones with


@dataclass
class TargetImages:
    """Images uint8 (N, C, S, S), their labels (indices into `classes`), the labelled training draw for each label
    budget, and the val (user data, Fashion-MNIST) and test indices; `files[i]` is image i's file (user data);
    `native`, the images at 28×28 (Fashion-MNIST), and `draw`, the label draw's number (Fashion-MNIST)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    train: dict[int, torch.Tensor]
    test: torch.Tensor
    val: torch.Tensor | None = None
    files: list[Path] | None = None
    name: str = "MNIST digits"
    native: torch.Tensor | None = None
    draw: int | None = None

    def pixels(self, backbone: str) -> torch.Tensor:
        """What `backbone` reads: ResNet-18 the 28×28 originals where there are any, else the resized images."""
        return self.native if backbone == "resnet18" and self.native is not None else self.images


def target_images(cfg: Any) -> TargetImages:
    """The target task of a transfer config at its input size: the bundled digits, or `cfg.data`'s class folders
    (grey for resnet18, RGB for lite0)."""
    size = cfg.effective("image_size")  # 0 is the backbone's size
    if not cfg.data:
        return digits(cfg.budgets, cfg.effective("test_per_class"), cfg.seed, size)
    return user_images(cfg.data, cfg.budgets, cfg.seed, size, channels(cfg.network), cfg.val_fraction,
                       cfg.test_fraction)


def prediction_images(cfg: Any, paths: Sequence[Path], invert: str = "auto",
                      size: int = 0) -> tuple[torch.Tensor, tuple[str, ...]]:
    """A user's image files prepared like the run's training images (`digit_image` for the digits, `load_images`
    for class folders and Fashion-MNIST, grey), uint8, at `size` (0: the run's); and the class names. Every file is
    read before anything is predicted."""
    for path in paths:
        read_file(path)  # a missing or unreadable file is one line naming it
    size = size or cfg.effective("image_size")
    if cfg.data:
        return torch.from_numpy(userdata.load_images(paths, size, channels(cfg.network))), listing(cfg.data)[0].classes
    if cfg.study == "fashion":  # light clothes on black, as in Fashion-MNIST
        return torch.from_numpy(userdata.load_images(paths, size, 1)), fashion_mnist.CLASSES
    grey = torch.stack([digit_image(load_image(path), invert) for path in paths])
    return torch.from_numpy(resize(grey.numpy(), size)), tuple(map(str, range(10)))


def channels(backbone: str) -> int:
    return 1 if backbone == "resnet18" else 3  # ResNet-18 is grey (its source and its summed ImageNet conv1)


def to_input(images: torch.Tensor, backbone: str) -> torch.Tensor:
    """uint8 images -> what the backbone reads: Fashion-MNIST-normalised grey for resnet18, [0, 1] for lite0
    (whose model normalises, and replicates grey to RGB, itself)."""
    x = images.float() / 255.0
    return (x - MEAN) / STD if backbone == "resnet18" else x


class InputScale(nn.Module):
    """`to_input` as the first layer of a model that is handed uint8 images (evaluation, prediction)."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return to_input(images, self.backbone)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, 1, H, W) -> (N, 1, size, size) with the resize user images get (`userdata.square_resize`)."""
    if images.shape[-1] == size:
        return images
    return np.stack([userdata.square_resize(image[0], size)[None] for image in images])


def source_cache_name(cfg: Any, device: torch.device) -> str:
    """The cache file of the ResNet-18 source model made by a transfer config's source settings on this device. On
    a CPU the thread count is part of it: threads sum in a different order, and thousands of SGD steps turn that
    into a different source, so each count gets its own deterministic one."""
    where = f"cpu{torch.get_num_threads()}" if device.type == "cpu" else device.type
    key = f"{cfg.source_steps}-{cfg.source_batch_size}-{cfg.source_lr:g}-{cfg.source_seed}-{torch.__version__}-{where}"
    return "transfer_source_" + key.replace(".", "_").replace("+", "_")


# ---- the bundled digits ------------------------------------------------------------------------------------
def digits(labels_per_class: tuple[int, ...], test_per_class: int, seed: int, size: int) -> TargetImages:
    """All 5,000 digits (resized to `size` if it is not 28), the fixed test set and each budget's draw."""
    images, labels = mnist_digits.load()
    train = {k: mnist_digits.split(labels, k, test_per_class, seed)[0] for k in labels_per_class}
    _, test = mnist_digits.split(labels, 0, test_per_class, seed)
    pixels = torch.from_numpy(resize(images.unsqueeze(1).numpy(), size))
    return TargetImages(pixels, labels, tuple(map(str, range(10))), train, test)


def digit_image(image: torch.Tensor, invert: str = "auto") -> torch.Tensor:
    """An RGB image (3, H, W) in [0, 1] -> uint8 (1, 28, 28) prepared like the training digits.

    A 28x28 image is used as it is (so a saved MNIST digit gives exactly the pixels the model trained on); a
    larger one is cropped to its ink's bounding box, padded to a square with MNIST's margin (the digit fills 20 of
    28 pixels) and resized."""
    grey = image[0] if bool((image[0] == image[1]).all() and (image[1] == image[2]).all()) else image.mean(0)
    border = torch.cat([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > grey.mean()):
        grey = 1 - grey  # dark ink on light paper -> light ink on black, as in MNIST
    if grey.shape != (28, 28):
        ink = (grey > 0.5 * grey.max()).nonzero()
        if len(ink):
            (top, left), (bottom, right) = ink.min(0).values, ink.max(0).values
            grey = grey[top:bottom + 1, left:right + 1]
        side = round(max(grey.shape) * 28 / 20)
        pad_h, pad_w = side - grey.shape[0], side - grey.shape[1]
        grey = F.pad(grey, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        grey = F.interpolate(grey[None, None], size=(28, 28), mode="bilinear", antialias=True,
                             align_corners=False)[0, 0].clamp(0, 1)
    return (grey * 255).round().to(torch.uint8).unsqueeze(0)


# ---- a user's class folders --------------------------------------------------------------------------------
def listing(path: str | Path) -> tuple[userdata.ImageFiles, np.ndarray | None]:
    """The images under `path` (not read) and their split codes (0 train, 1 val, 2 test) if the folder is split
    into train/, test/ and optionally val/; class names are train/'s."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; expected {root}/CLASS/IMAGE")
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "train" not in folders or not folders <= set(userdata.SPLITS):
        return userdata.image_class_folders(root), None
    if "test" not in folders:
        raise DataError(f"{root}: a train/ folder but no test/; split folders are train/, test/ and optionally val/")
    train = userdata.image_class_folders(root / "train")
    files, labels, codes = list(train.files), [train.labels], [np.zeros(len(train.files), dtype=np.int64)]
    for code, name in ((1, "val"), (2, "test")):
        if name in folders:
            part = userdata.image_class_folders(root / name)
            for c in part.classes:
                if c not in train.classes:
                    raise DataError(f"{root / name / c}: class '{c}' is not in {root / 'train'}; give it training "
                                    "images or leave it out")
            files += part.files
            labels.append(np.array([train.classes.index(part.classes[i]) for i in part.labels], dtype=np.int64))
            codes.append(np.full(len(part.files), code, dtype=np.int64))
    return userdata.ImageFiles(root, files, np.concatenate(labels), train.classes), np.concatenate(codes)


def split(labels: np.ndarray, codes: np.ndarray | None, val_fraction: float,
          test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training pool, val, test) indices: the split folders', or each class's shares by `SPLIT_SEED`."""
    if codes is None:
        return userdata.stratified_split(labels, SPLIT_SEED, val_fraction, test_fraction)
    pool, val, test = (np.flatnonzero(codes == c) for c in range(3))
    if len(val) == 0:  # no val/ folder: hold out a share of train
        kept, held, _ = userdata.stratified_split(labels[pool], SPLIT_SEED, val_fraction, 0.0)
        pool, val = pool[kept], pool[held]
    return pool, val, test


def check(listed: userdata.ImageFiles, pool: np.ndarray, val: np.ndarray, test: np.ndarray,
          labels_per_class: tuple[int, ...]) -> None:
    """Refuse, naming the class folder, a split that leaves a class too few training images for the largest label
    budget asked for, or none in val or in test."""
    need = max(labels_per_class)
    for c, name in enumerate(listed.classes):
        counts = [int((listed.labels[part] == c).sum()) for part in (pool, val, test)]
        where = listed.source / name
        if counts[0] < need:
            raise DataError(f"{where}: {sum(counts)} images, {counts[0]} of them for training after the val/test "
                            f"split; --labels_per_class {need} needs {need} (lower it, or add images)")
        for count, part in zip(counts[1:], ("val", "test")):
            if count == 0:
                raise DataError(f"{where}: no images in the {part} split ({sum(counts)} in all); add images or "
                                f"raise --{part}_fraction")


@functools.lru_cache(maxsize=1)  # check_launch reads the images, the run that follows reuses them
def user_images(path: str, labels_per_class: tuple[int, ...], seed: int, size: int, channels: int,
                val_fraction: float, test_fraction: float) -> TargetImages:
    listed, codes = listing(path)
    pool, val, test = split(listed.labels, codes, val_fraction, test_fraction)
    check(listed, pool, val, test, labels_per_class)
    labels = torch.from_numpy(listed.labels)
    drawn = mnist_digits.draw_per_class(labels, torch.from_numpy(pool), max(labels_per_class), seed)
    used = np.unique(np.concatenate([drawn.numpy(), val, test]))  # the images this run reads, and only those
    position = torch.full((len(labels),), -1, dtype=torch.int64)
    position[used] = torch.arange(len(used))
    per_class = {c: drawn[labels[drawn] == c] for c in range(len(listed.classes))}
    train = {k: position[torch.cat([per_class[c][:k] for c in per_class])] for k in labels_per_class}
    images = torch.from_numpy(userdata.load_images([listed.files[i] for i in used], size, channels))
    return TargetImages(images, labels[used], listed.classes, train, position[torch.from_numpy(test)],
                        position[torch.from_numpy(val)], [listed.files[i] for i in used], listed.source.name)

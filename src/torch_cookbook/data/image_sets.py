"""Image sets for the generative recipes (gan, autoencoder): a user's folder of images, read and split; image grids.

`--data DIR`: every image under DIR, subfolders included (hidden files and folders ignored), unlabelled, any size,
grey or RGB, listed and read by `data.userdata` (`image_folder`, `load_images`): each file is decoded one at a
time, centre-cropped to a square and resized to `size` (32 or 64), and kept as uint8 (N, channels, size, size), so
the images cost N·channels·size² bytes in memory, never the files' decoded sizes. Channels: given (1 or 3), or 1
when every file is stored grey (PIL modes 1, L, LA, I, F: read from each file's header) and 3 otherwise.

Split: a seeded random `test_fraction` of the images is held out (FID's real side, the test reconstruction error);
both parts come in a seeded random order, so their first k images are a random pick. The decoded images are cached
under the data cache (`data.cache`), keyed by the folder's SHA-256, the size and the channels: the launch check
reads the folder once, and the run, `eval` and `--resume` reuse it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from torch_cookbook.data import userdata
from torch_cookbook.data.cache import load_cached, store_cached
from torch_cookbook.errors import ConfigError, DataError

SIZES = (32, 64)  # what the networks take: a 8×8 grid doubled two or three times (nn.gan.stages_for)
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")  # PIL modes of single-channel files
MIN_HELD_OUT = 2  # a covariance, and so a FID, needs two images on each side


@dataclass
class ImageSet:
    """A user's images as uint8 (N, channels, size, size): the training part and the held-out part."""

    source: Path
    train: torch.Tensor
    test: torch.Tensor

    @property
    def channels(self) -> int:
        return self.train.shape[1]


def stored_channels(files: Sequence[Path]) -> int:
    """1 when every file is stored grey, else 3; only each file's header is read."""
    from PIL import Image, UnidentifiedImageError

    for file in files:
        try:
            with Image.open(file) as im:
                if im.mode not in GREY_MODES:
                    return 3
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{file}: not a readable image ({type(e).__name__}: {str(e)[:80]}); expected"
                            f" {'/'.join(x[1:] for x in userdata.IMAGE_EXTENSIONS)}") from None
    return 1


def image_channels(path: str | Path, channels: int = 0) -> int:
    """`channels` if given (1 or 3), else what the folder's files are stored as."""
    return channels or stored_channels(userdata.image_folder(path).files)


def read(path: str | Path, size: int, channels: int, seed: int, test_fraction: float, min_train: int) -> ImageSet:
    """Every image under `path`, decoded (or from the cache) and split. Refused in one line naming the folder or the
    file: no images, a file that is not an image (by extension), an unreadable or truncated image, and too few images
    for MIN_HELD_OUT held out and `min_train` (the batch size) to train on."""
    if size not in SIZES:
        raise DataError(f"{path}: image size {size}; allowed {', '.join(map(str, SIZES))}")
    files = userdata.image_folder(path).files
    n_test = round(test_fraction * len(files))
    if n_test < MIN_HELD_OUT or len(files) - n_test < min_train:
        raise DataError(f"{path}: {len(files)} images; --test_fraction {test_fraction} holds out {n_test} and leaves"
                        f" {len(files) - n_test} to train on; it needs at least {MIN_HELD_OUT} held out and"
                        f" --batch_size {min_train} to train on")
    channels = channels or stored_channels(files)
    key = f"{userdata.fingerprint(path)['sha256']}|{size}|{channels}"
    name = f"image_set_{key[:16]}_{size}_{channels}"
    cached = load_cached(name, key)
    if cached is None:
        cached = {"pixels": torch.from_numpy(userdata.load_images(files, size, channels))}
        store_cached(name, key, cached)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(files)))
    return ImageSet(Path(path), cached["pixels"][order[n_test:]], cached["pixels"][order[:n_test]])


def read_files(files: Sequence[Path], size: int, channels: int) -> torch.Tensor:
    """Image files given one by one (predict's inputs) as float (N, channels, size, size) in [0, 1]."""
    for file in files:
        if not os.path.isfile(file):  # False, not an error, for a name too long or with a NUL byte
            raise DataError(f"{str(file)[:200]}: no such file")
    return unit(torch.from_numpy(userdata.load_images([Path(f) for f in files], size, channels)))


def unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → float in [0, 1]; float images pass unchanged."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


def picture(image: torch.Tensor) -> np.ndarray:
    """One image (1 or 3, H, W) in [0, 1] as matplotlib shows it: (H, W) grey or (H, W, 3) RGB."""
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).clamp(0, 1).numpy()


def save_image_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> None:
    """Images in [0, 1], (N, 1 or 3, H, W) → one PNG grid, about square unless `nrow` is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=nrow or math.ceil(math.sqrt(len(images))), padding=2, pad_value=1.0)
    if images.shape[1] == 1:
        plt.imsave(path, grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        plt.imsave(path, picture(grid))


def output_png(out: Path | None, default: Path) -> Path:
    """Where `predict` writes its PNG: `--out`, or `default`; another suffix or a missing folder is refused."""
    out = Path(out) if out is not None else default
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: the grid is written as PNG; give a path ending in .png")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    return out

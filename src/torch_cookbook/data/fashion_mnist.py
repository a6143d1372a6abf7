"""Fashion-MNIST (Zalando, MIT licence): 60,000 train / 10,000 test greyscale 28×28 images, 10 classes.

Where it comes from, in order:
1. `$COOKBOOK_FASHION_MNIST` or Debian's package `dataset-fashion-mnist`
   (`/usr/share/datasets/fashion-mnist/*-ubyte.gz`; `make` installs it with apt);
2. the processed cache (~/.cache/torch-cookbook/fashion_mnist.pt);
3. only with `download=True` (`--download`), torchvision's downloader into the cache folder.
Every load checks the decompressed files' SHA-256 against the published data, so a truncated or
altered file is reported (with how to restore it), never silently used.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from torch_cookbook.data.cache import cache_dir, load_cached, store_cached
from torch_cookbook.errors import DataError

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# SHA-256 of the decompressed idx files, and their sizes (header + payload).
FILES = {
    "train_images": ("train-images-idx3-ubyte",
                     "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
    "train_labels": ("train-labels-idx1-ubyte",
                     "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
    "test_images": ("t10k-images-idx3-ubyte",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
    "test_labels": ("t10k-labels-idx1-ubyte",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
}
HOW_TO_GET = ("install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), set "
              "COOKBOOK_FASHION_MNIST to a folder with the four *-ubyte.gz files, or pass --download")
SOURCE_KEY = "sha256:" + ",".join(sha for _, sha, _ in FILES.values())


@dataclass
class FashionMNIST:
    """uint8 images (N, 28, 28) and int64 labels (N,) for train and test."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def find_source_dir(download: bool = False) -> Path | None:
    candidates = [os.environ.get("COOKBOOK_FASHION_MNIST"), DEBIAN_DIR, cache_dir() / "FashionMNIST" / "raw"]
    for c in candidates:
        if c and all(_file_in(Path(c), stem) for stem, _, _ in FILES.values()):
            return Path(c)
    if download:
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

        TorchvisionFashionMNIST(str(cache_dir()), train=True, download=True)
        TorchvisionFashionMNIST(str(cache_dir()), train=False, download=True)
        return cache_dir() / "FashionMNIST" / "raw"
    return None


def _file_in(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_verified(path: Path, sha: str, size: int) -> bytes:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"Fashion-MNIST file {path} is unreadable or truncated ({e}); {HOW_TO_GET}") from None
    if len(raw) != size or hashlib.sha256(raw).hexdigest() != sha:
        raise DataError(f"Fashion-MNIST file {path} fails its checksum (size {len(raw)}, expected {size}); "
                        f"restore it: {HOW_TO_GET}")
    return raw


def load(download: bool = False) -> FashionMNIST:
    """All of Fashion-MNIST as tensors; verified against checksums; cached after the first decode."""
    source = find_source_dir(download)
    cached = load_cached("fashion_mnist", SOURCE_KEY)
    if source is None and cached is None:
        raise DataError(f"Fashion-MNIST not found; {HOW_TO_GET}")
    if source is not None:
        # Verify the source on every load (0.3 s) so that a damaged file is reported, not masked by the cache.
        tensors = {}
        for key, (stem, sha, size) in FILES.items():
            raw = _read_verified(_file_in(source, stem), sha, size)
            header = 16 if key.endswith("images") else 8
            array = np.frombuffer(raw, dtype=np.uint8, offset=header)
            tensors[key] = torch.from_numpy(array.copy())
        tensors["train_images"] = tensors["train_images"].view(-1, 28, 28)
        tensors["test_images"] = tensors["test_images"].view(-1, 28, 28)
        tensors["train_labels"] = tensors["train_labels"].long()
        tensors["test_labels"] = tensors["test_labels"].long()
        if cached is None:
            store_cached("fashion_mnist", SOURCE_KEY, tensors)
    else:
        tensors = cached
    return FashionMNIST(**tensors)


def as_float(images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """uint8 (N, 28, 28) → float (N, 1, 28, 28): in [0, 1], or standardised with the train mean/std."""
    x = images.unsqueeze(1).float().div_(255.0)
    if normalize:
        x = (x - 0.2860) / 0.3530  # Fashion-MNIST train-set mean and std
    return x


def subsets(train: int = 0, test: int = 0, normalize: bool = True,
            data: FashionMNIST | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): the first `train` training and `test` test images (0 = all),
    as float N×1×28×28 (`as_float`, standardised unless `normalize` is False)."""
    data = data or load()
    n_train = train or len(data.train_labels)
    n_test = test or len(data.test_labels)
    return (as_float(data.train_images[:n_train], normalize), data.train_labels[:n_train],
            as_float(data.test_images[:n_test], normalize), data.test_labels[:n_test])

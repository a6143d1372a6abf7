"""Write the unet own-data worked example: a real fluorescence image of cell nuclei and its annotated nucleus mask.

The data is the 2D test image that the PyPI package `stardist` (BSD-3-Clause) ships in `stardist/data/images/`:
`img2d.tif`, a 512 × 512 fluorescence microscopy image from the 2018 Kaggle Data Science Bowl (Caicedo et al.,
Nature Methods 16, 2019), and `mask2d.tif`, its annotation, one integer label per nucleus (183 nuclei). The files
are read with tifffile; stardist itself is never imported (it would need TensorFlow), so `pip install --no-deps
stardist` is enough. This cuts the image and its mask into non-overlapping tiles (64 × 64 by default: 64 pairs)
and writes them as DIR/images/rRR_cCC.png (8-bit grey) and DIR/masks/rRR_cCC.png: class 0 background, class 1
nucleus (label > 0); with --boundary, class 2 is a nucleus pixel that touches another label or the background
(4-neighbourhood), the usual third class for separating touching nuclei. The recipe never uses it by default.

    pip install --no-deps stardist
    python benchmarks/own_data/unet_example.py /tmp/nuclei
    cookbook run unet --profile quick --data /tmp/nuclei --image_size 64 --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np


def stardist_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("stardist")  # finds the installed package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("stardist is not installed: pip install --no-deps stardist")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    return folder / "img2d.tif", folder / "mask2d.tif"


def boundary(labels: np.ndarray) -> np.ndarray:
    """True where a labelled pixel has a 4-neighbour with another label (background included); the image edge is
    not a boundary."""
    edge = np.zeros(labels.shape, dtype=bool)
    for axis in (0, 1):
        differs = np.diff(labels, axis=axis) != 0
        low, high = [slice(None)] * 2, [slice(None)] * 2
        low[axis], high[axis] = slice(None, -1), slice(1, None)
        edge[tuple(low)] |= differs
        edge[tuple(high)] |= differs
    return edge & (labels > 0)


def main() -> None:
    import tifffile
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (images/ and masks/ inside)")
    parser.add_argument("--tile", type=int, default=64, help="tile side in pixels [64]")
    parser.add_argument("--boundary", action="store_true", help="three classes: background, nucleus, its boundary")
    args = parser.parse_args()
    image_file, mask_file = stardist_files()
    image, labels = tifffile.imread(image_file), tifffile.imread(mask_file).astype(np.int64)
    assert image.shape == labels.shape == (512, 512), (image.shape, labels.shape)
    if image.max() > 255:  # the shipped file holds 0..235 in a uint16 TIFF; rescale only if that ever changes
        image = image.astype(np.float64) * 255 / image.max()
    image = image.astype(np.uint8)
    mask = (labels > 0).astype(np.uint8)
    if args.boundary:
        mask[boundary(labels)] = 2
    for part in ("images", "masks"):
        (args.out / part).mkdir(parents=True, exist_ok=True)
    t = args.tile
    for r in range(image.shape[0] // t):
        for c in range(image.shape[1] // t):
            window = np.s_[r * t:(r + 1) * t, c * t:(c + 1) * t]
            Image.fromarray(image[window]).save(args.out / "images" / f"r{r:02d}_c{c:02d}.png")
            Image.fromarray(mask[window]).save(args.out / "masks" / f"r{r:02d}_c{c:02d}.png")
    shares = np.bincount(mask.ravel()) / mask.size
    print(f"{args.out}: {(image.shape[0] // t) * (image.shape[1] // t)} pairs of {t} × {t}; {labels.max()} nuclei; "
          f"class pixel shares {', '.join(f'{s:.3f}' for s in shares)}")


if __name__ == "__main__":
    main()

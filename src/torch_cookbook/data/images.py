"""Photos for the vision recipes: images bundled with scikit-image and scikit-learn, or the user's own files.

Bundled (no download; licences as the packages state them, see their docs):
    scikit-image `skimage.data`: astronaut, coffee, chelsea, rocket, immunohistochemistry, hubble_deep_field,
        colorwheel (colour); brick, grass, gravel, camera (greyscale)
    scikit-learn `load_sample_images()`: china, flower (colour JPEGs)
Anything else is read as a file path; a missing file or a file that is not an image is a one-line `DataError`.
All images come back as float tensors (3, H, W) in [0, 1], RGB.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from torch_cookbook.errors import DataError

SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel",
           "brick", "grass", "gravel", "camera")
SKLEARN = ("china", "flower")
BUNDLED = SKIMAGE + SKLEARN


@functools.cache
def bundled_array(name: str) -> np.ndarray:
    """A bundled image as a read-only uint8 numpy array (H, W) or (H, W, 3)."""
    if name in SKIMAGE:
        import skimage.data

        array = np.asarray(getattr(skimage.data, name)())
    elif name in SKLEARN:
        # The JPEGs that sklearn.datasets.load_sample_image reads; opened directly, since importing
        # scikit-learn takes seconds. find_spec locates the package without importing it.
        spec = importlib.util.find_spec("sklearn")
        if spec is None or not spec.submodule_search_locations:
            raise DataError(f"bundled image {name!r} comes with scikit-learn, which is not installed")
        folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "images"
        array = read_file(folder / f"{name}.jpg")
    else:
        raise DataError(f"unknown bundled image {name!r}; bundled: {', '.join(BUNDLED)}")
    array.setflags(write=False)
    return array


def read_file(path: Path) -> np.ndarray:
    """A user's image file as uint8 RGB (H, W, 3). Missing or unreadable files are one-line errors."""
    path = Path(path)
    shown = str(path) if len(str(path)) <= 200 else str(path)[:200] + "..."
    try:
        exists = path.exists()
    except (OSError, ValueError) as e:  # e.g. a name too long for the file system
        raise DataError(f"image path {shown} is not usable: {getattr(e, 'strerror', None) or e}") from None
    if not exists:
        raise DataError(f"image {shown} does not exist; give a path to a PNG/JPEG file or one of: {', '.join(BUNDLED)}")
    if not path.is_file():
        raise DataError(f"image {path} is not a file")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        reason = type(e).__name__
        raise DataError(f"{path} is not an image that can be read (PNG, JPEG, ...): {reason}") from None


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W), (H, W, 3) or (H, W, 4) → float (3, H, W) in [0, 1]; greyscale is repeated, alpha dropped."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    x = torch.from_numpy(np.array(array, dtype=np.float32)).div_(255.0)
    if x.ndim == 2:
        x = x.unsqueeze(-1).expand(-1, -1, 3)
    return x[..., :3].permute(2, 0, 1).contiguous()


def load_image(name_or_path: str | Path) -> torch.Tensor:
    """A bundled image by name, else a file path; float (3, H, W) in [0, 1]."""
    if isinstance(name_or_path, str) and name_or_path in BUNDLED:
        return to_tensor(bundled_array(name_or_path))
    return to_tensor(read_file(Path(name_or_path)))


def square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop to a square and resize (antialiased bilinear) to size × size."""
    _, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[:, top:top + side, left:left + side]
    out = F.interpolate(crop.unsqueeze(0), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.squeeze(0).clamp_(0, 1)


def check_size(image: torch.Tensor, minimum: int, what: str) -> None:
    """A one-line error when an image is smaller than a network can take."""
    h, w = image.shape[-2:]
    if min(h, w) < minimum:
        raise DataError(f"{what} is {h}×{w} pixels; this network needs at least {minimum}×{minimum}")


def save_png(image: torch.Tensor, path: Path) -> Path:
    """Save a (3, H, W) float image in [0, 1] as PNG."""
    from PIL import Image

    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path

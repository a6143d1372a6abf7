"""torchvision's ResNet-18 for 28×28 greyscale images, and its ImageNet weights adapted to them (the other moves
of transfer learning, replacing the head and freezing the backbone, are in `nn.backbones`, for any backbone).

The architecture is torchvision's own (`torchvision.models.resnet18`), so ImageNet weights load with
`load_state_dict` unchanged except for the first convolution: a greyscale image is an RGB image with
three equal channels, so its 1-channel kernel is the sum of the three RGB kernels (exactly the same
response). On 28×28 inputs the stem (7×7 stride 2, max-pool) gives 7×7 maps and layer4 sees 1×1: cheap
on a CPU, and still the same parameters as the ImageNet model.

ImageNet weights are read from the torch hub cache (`torch.hub.get_dir()/checkpoints/`); downloading
them happens only when the caller passes `download=True`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from torch_cookbook.errors import ConfigError

__all__ = ["grey_state_dict", "imagenet_weights_path", "load_imagenet_resnet18", "resnet18_grey", "imagenet_available"]


def resnet18_grey(num_classes: int = 10) -> torchvision.models.ResNet:
    """torchvision ResNet-18 with a 1-channel first convolution (same 7×7/2 shape as ImageNet's)."""
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def grey_state_dict(rgb_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An RGB ResNet's state dict for a 1-channel input: conv1's kernels summed over the colour channels,
    so that grey image g gives exactly the response the RGB model gives to (g, g, g)."""
    state = dict(rgb_state)
    state["conv1.weight"] = rgb_state["conv1.weight"].sum(dim=1, keepdim=True)
    return state


def imagenet_weights_path() -> Path:
    """Where torchvision's hub cache keeps ResNet18_Weights.IMAGENET1K_V1 (it may not exist)."""
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def imagenet_available() -> bool:
    return imagenet_weights_path().is_file()


def load_imagenet_resnet18(num_classes: int = 10, download: bool = False) -> torchvision.models.ResNet:
    """ImageNet ResNet-18 adapted to greyscale: conv1's RGB kernels summed, a new `num_classes` head."""
    if not download and not imagenet_available():
        raise ConfigError(f"--weights imagenet: {imagenet_weights_path()} is not in the torch hub cache; "
                          "pass --download to fetch it, or use --weights source")
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    try:
        rgb = torchvision.models.resnet18(weights=weights, progress=False)  # reads the cache, downloads if absent
    except Exception as e:  # a damaged cached file or a failed download: say which, in one line
        raise ConfigError(f"--weights imagenet: could not load {imagenet_weights_path()} ({type(e).__name__}); "
                          "delete it and pass --download, or use --weights source") from None
    model = resnet18_grey(num_classes=1000)
    model.load_state_dict(grey_state_dict(rgb.state_dict()))
    model.fc = nn.Linear(model.fc.in_features, num_classes)  # a new head for the target's classes
    return model

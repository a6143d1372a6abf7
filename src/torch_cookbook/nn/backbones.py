"""The two backbones transfer learning compares, behind one interface, and the moves of transfer learning on
either: replace the head, freeze (or slow down) the parameters under it, read the pooled features it reads.

`resnet18`: torchvision's ResNet-18 for grey images (`nn.resnet`), head `fc`, 512-d features.
`lite0`: EfficientNet-Lite0 with ImageNet weights from its package file (`nn.efficientnet`), wrapped so that it
takes images in [0, 1] (grey or RGB) like the data gives them, head `net._fc`, 1280-d features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from torch_cookbook.errors import ConfigError
from torch_cookbook.nn.efficientnet import lite0, lite0_features, lite0_normalise, lite0_weights_path
from torch_cookbook.nn.resnet import imagenet_available, imagenet_weights_path

__all__ = ["BACKBONES", "Lite0Classifier", "backbone_parameters", "check_weights", "freeze_backbone", "head",
           "head_parameters", "lite0_imagenet_features", "pooled_features", "replace_head", "streamed_features"]

BACKBONES = ("resnet18", "lite0")


class Lite0Classifier(nn.Module):
    """EfficientNet-Lite0 on images in [0, 1]; a grey image is replicated to RGB (`lite0_normalise`).

    `bn_momentum` replaces the 0.01 of Lite0's ImageNet training (a running average over ~100 steps, made for
    hundreds of thousands of them): after a short target run at 0.01 the running statistics would still be partly
    ImageNet's (or, from scratch, the initial 0 and 1) when the model is evaluated."""

    def __init__(self, num_classes: int | None, pretrained: bool = True, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.net = lite0(num_classes, pretrained)
        for module in self.net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = bn_momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(lite0_normalise(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return lite0_features(self.net, x)


def check_weights(backbone: str, weights: str, download: bool) -> None:
    """Refuse, in one line, pretrained weights that are not on this machine (and may not be downloaded): lite0's
    package, or resnet18's ImageNet file in the torch hub cache."""
    if backbone == "lite0":
        lite0_weights_path()  # names the pip command when the package is missing
    elif weights == "imagenet" and not download and not imagenet_available():
        raise ConfigError(f"--weights imagenet: {imagenet_weights_path()} is not in the torch hub cache; "
                          "pass --download to fetch it, or use --weights source")


def head(model: nn.Module) -> nn.Linear:
    """The classification layer a transfer replaces: ResNet's `fc`, Lite0's `_fc`."""
    return model.net._fc if isinstance(model, Lite0Classifier) else model.fc


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """A new, randomly initialised head for the target's classes."""
    new = nn.Linear(head(model).in_features, num_classes)
    if isinstance(model, Lite0Classifier):
        model.net._fc = new
    else:
        model.fc = new
    return new


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(head(model).parameters())


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    in_head = {id(p) for p in head(model).parameters()}
    return [p for p in model.parameters() if id(p) not in in_head]


def freeze_backbone(model: nn.Module) -> list[nn.Parameter]:
    """Stop gradients to everything but the head; returns the parameters left trainable.

    `requires_grad_(False)` does not freeze BatchNorm: its running statistics still move whenever the model runs
    in train mode. Keep the frozen backbone in eval mode too (the transfer recipe does `model.eval()`)."""
    for p in backbone_parameters(model):
        p.requires_grad_(False)
    return head_parameters(model)


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the head reads: the globally pooled output of the backbone, (N, features)."""
    if isinstance(model, Lite0Classifier):
        return model.features(x)
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


@torch.inference_mode()
def streamed_features(model: nn.Module, images: torch.Tensor, scale: Callable[[torch.Tensor], torch.Tensor],
                      device: torch.device, batch_size: int = 250) -> torch.Tensor:
    """`pooled_features` of `images` (scaled batch by batch by `scale`), in eval mode, float32 on the CPU."""
    was_training = model.training
    model.eval()
    out = [pooled_features(model, scale(images[i:i + batch_size].to(device))).float().cpu()
           for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def lite0_imagenet_features(images: torch.Tensor, device: torch.device, batch_size: int = 250) -> torch.Tensor:
    """Pretrained Lite0's pooled 1280-d features of uint8 images (N, C, S, S), computed in eval mode, in batches:
    what a linear probe on the frozen backbone reads."""
    model = Lite0Classifier(None).to(device)
    return streamed_features(model, images, lambda x: x.float() / 255.0, device, batch_size)

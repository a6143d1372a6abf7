"""Transfer learning (seed Q35: a pretrained network, a new head, fine-tuning) against training from scratch, a
frozen backbone (linear probe) and LP-FT (`METHODS`). EfficientNet-Lite0's ImageNet weights go to 10 or 100 labelled
Fashion-MNIST images per class, against ResNet-18 and Lite0 from scratch on the same paired label draws; `--task
digits` pre-trains ResNet-18 on Fashion-MNIST for digits; `--data DIR` takes your class folders, under torchrun too.

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

from torch_cookbook.data import fashion_mnist, transfer_draws
from torch_cookbook.data import transfer_data as target_data
from torch_cookbook.data.cache import cache_dir
from torch_cookbook.data.transfer_data import InputScale, TargetImages, to_input
from torch_cookbook.data.transfer_draws import each_arm, first_draw, variant_name
from torch_cookbook.engine import distributed as dist
from torch_cookbook.engine.checkpoint import load_checkpoint
from torch_cookbook.engine.config import ON_BUNDLED_DATA, BaseConfig, ConfigError, Target, param
from torch_cookbook.engine.loop import accuracy, autocast, batches, grad_scaler, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.nn import backbones
from torch_cookbook.nn.backbones import Lite0Classifier, head
from torch_cookbook.nn.resnet import load_imagenet_resnet18, resnet18_grey

seed_question = "Q35 Transfer learning"
summary = "EfficientNet-Lite0 from ImageNet on few Fashion-MNIST labels: scratch vs probe vs fine-tune vs LP-FT."
BACKBONE_DEFAULTS = {"resnet18": {"image_size": 28, "lr": 0.05, "scratch_lr": 0.03, "probe_lr": 0.3},
                     "lite0": {"image_size": 64, "lr": 0.02, "scratch_lr": 0.01, "probe_lr": 0.03}}
STUDY_DEFAULTS = {"fashion": {"labels_per_class": (10, 100), "test_per_class": 200},
                  **dict.fromkeys(("digits", "own"), {"labels_per_class": (10, 50, 100), "test_per_class": 100})}


@dataclass
class Config(BaseConfig):
    task: str = param("fashion", "the bundled study: fashion (Lite0 -> Fashion-MNIST, the target) or digits (ResNet-18 "
                      "pre-trained here on Fashion-MNIST -> MNIST digits)", choices=("fashion", "digits"))
    backbone: str = param("auto", "auto (lite0 for --task fashion, else resnet18), resnet18 (torchvision's, grey) or "
                          "lite0 (EfficientNet-Lite0, ImageNet weights)", choices=("auto", *backbones.BACKBONES))
    weights: str = param("source", "resnet18's: source (pre-train on Fashion-MNIST here) or imagenet (torchvision's, "
                         "from the torch hub cache); lite0 has ImageNet's", choices=("source", "imagenet"))
    data: str = param("", "your own target task: class folders DIR/CLASS/IMAGE (or DIR/train|val|test/CLASS/IMAGE)")
    image_size: int = param(0, "input side in pixels; 0: the backbone's (BACKBONE_DEFAULTS)", low=0, high=1024)
    val_fraction: float = param(0.1, "--data: validation share of each class", low=0.01, high=0.5)
    test_fraction: float = param(0.2, "--data: test share of each class", low=0.01, high=0.5)
    download: bool = param(False, "allow downloading ImageNet weights (or Fashion-MNIST) if not cached")
    source_steps: int = param(3000, "pre-training steps on Fashion-MNIST (SGD, batch source_batch_size)", low=1)
    source_batch_size: int = param(64, "pre-training minibatch size", low=2)
    source_lr: float = param(0.05, "pre-training SGD learning rate (cosine decay)", low=0, low_open=True)
    source_seed: int = param(0, "seed of the pre-training run (cached per setting: every --seed reuses it)", low=0)
    # 0 or empty: the study's (STUDY_DEFAULTS). --task fashion: each arm trains on every draw, 5*seed, 5*seed+1, ...
    labels_per_class: tuple[int, ...] = param((), "target training labels per class, one set of runs each", low=1)
    draws: int = param(5, "--task fashion: label draws per run", low=1, high=transfer_draws.DRAWS_PER_SEED)
    val_per_class: int = param(100, "--task fashion: fixed validation images per class (of train)", low=1, high=1000)
    test_per_class: int = param(0, "fixed test images per class", low=0, high=1000)
    steps: int = param(100, "training steps per target variant (every method gets the same budget)", low=1)
    batch_size: int = param(32, "target minibatch size", low=2)
    # Each method's peak learning rate (cosine decay to 0 over `steps`); 0 is the backbone's (BACKBONE_DEFAULTS).
    lr: float = param(0.0, "fine-tuning SGD learning rate (the head's, and the backbone's in full fine-tuning)", low=0)
    scratch_lr: float = param(0.0, "SGD learning rate of the from-scratch baseline", low=0)
    resnet18_scratch_lr: float = param(0.0, "--task fashion: the scratch ResNet-18's; 0: resnet18's scratch_lr", low=0)
    probe_lr: float = param(0.0, "SGD learning rate of the linear probe's head (and of LP-FT's probe phase)", low=0)
    lpft_probe_steps: int = param(30, "LP-FT: first steps that train the new head alone, on the frozen backbone", low=1)
    momentum: float = param(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = param(5e-4, "SGD weight decay", low=0)
    source_eval: int = param(2000, "Fashion-MNIST test images used to report the source model's accuracy", low=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if 10 not in self.budgets:
            raise ConfigError(f"--labels_per_class {' '.join(map(str, self.budgets))}: must include 10 (the target's)")
        if self.lpft_probe_steps >= self.steps:
            raise ConfigError(f"--lpft_probe_steps {self.lpft_probe_steps}: must be below --steps {self.steps}")
        if self.study == "digits" and max(self.budgets) + self.effective("test_per_class") > 500:
            raise ConfigError(f"--labels_per_class {max(self.budgets)} + --test_per_class "
                              f"{self.effective('test_per_class')}: more than the 500 digits per class available")
        if 0 < self.image_size < 16:
            raise ConfigError(f"--image_size {self.image_size}: use 0 (the backbone's own) or at least 16")
        if self.study == "fashion" and self.network == "resnet18" and self.weights == "source":
            raise ConfigError("--task fashion --backbone resnet18 --weights source: the source would be the target "
                              "itself; use --backbone lite0 (the default) or --weights imagenet")

    @property
    def study(self) -> str:  # fashion, digits, or own (--data)
        return "own" if self.data else self.task

    @property
    def network(self) -> str:  # the backbone in use: auto is lite0 for Fashion-MNIST, else resnet18
        return self.backbone if self.backbone != "auto" else "lite0" if self.study == "fashion" else "resnet18"

    @property
    def budgets(self) -> tuple[int, ...]:
        return tuple(self.effective("labels_per_class"))

    def effective(self, name: str) -> float | tuple:
        """Field `name`, or when it is 0 or empty the backbone's or the study's (chosen on validation, never test)."""
        return getattr(self, name) or {**BACKBONE_DEFAULTS[self.network], **STUDY_DEFAULTS[self.study]}[name]


profiles = {
    "smoke": {"source_steps": 4, "source_batch_size": 16, "source_eval": 100, "labels_per_class": (10,), "draws": 1,
              "test_per_class": 10, "val_per_class": 5, "steps": 4, "batch_size": 16, "lpft_probe_steps": 2},
    "quick": {"source_steps": 150, "labels_per_class": (10, 50), "test_per_class": 50, "steps": 40,
              "lpft_probe_steps": 12, "draws": 2, "val_per_class": 50},
    "full": {},
}

# Judged by `cookbook bench transfer --seeds 3` on the 15 paired draws (`across_seeds`): docs/transfer.md, "Target".
FASHION = (*ON_BUNDLED_DATA, ("task", "fashion"))
targets = [Target("pretrained_minus_scratch_10_mean", ">=", 0.05, FASHION, across_seeds=True),
           Target("pretrained_minus_scratch_10_ci_low", ">=", 0.0, FASHION, across_seeds=True)]
DATA_FIELDS = {"data": ()}  # the run records the folder's SHA-256 (data.json); eval, predict and resume check it

# The comparison, each method with its plot label: what trains, at which learning rate.
METHODS = {
    "scratch": "from scratch",  # every weight, from random initialisation, at scratch_lr
    "probe": "frozen backbone (linear probe)",  # the new head alone at probe_lr; the backbone frozen, in eval mode
    "finetune": "full fine-tune",  # every weight at lr
    "lpft": "LP-FT (head only for {cfg.lpft_probe_steps} steps, then all)",  # probe phase, then fine-tuning phase
    "scratch_resnet18": "ResNet-18 from scratch, 28 px",  # beside Lite0's scratch: architecture vs pretraining
}
SCRATCH_ARMS, PRETRAINED_ARMS = ("scratch", "scratch_resnet18"), ("probe", "finetune", "lpft")


def methods(cfg: Config) -> list[str]:
    """This run's arms: the Fashion-MNIST study adds a ResNet-18 from scratch beside Lite0's own scratch arm."""
    return [m for m in METHODS if m != "scratch_resnet18" or (cfg.study == "fashion" and cfg.network == "lite0")]


def arm_backbone(cfg: Config, method: str) -> str:
    return "resnet18" if method == "scratch_resnet18" else cfg.network


# ---- the technique: a new head on pretrained weights; what each method trains ------------------------
def build_target_model(cfg: Config, run: Run, method: str, num_classes: int, seed: int) -> nn.Module:
    """scratch: random init. Otherwise the pre-trained weights with a new head for the target's classes."""
    torch.manual_seed(seed)
    if arm_backbone(cfg, method) == "resnet18" and method in SCRATCH_ARMS:
        return resnet18_grey(num_classes=num_classes).to(run.device)
    if cfg.network == "lite0":
        return Lite0Classifier(num_classes, pretrained=method != "scratch").to(run.device)
    if cfg.weights == "imagenet":
        model = load_imagenet_resnet18(num_classes=num_classes, download=cfg.download)
    else:
        model = resnet18_grey(num_classes=10)
        model.load_state_dict(load_source(run.root.variant("source").checkpoint_path()).state_dict())
        backbones.replace_head(model, num_classes)  # the source's Fashion-MNIST head means nothing for the target
    return model.to(run.device)


def make_optimizer(cfg: Config, model: nn.Module, method: str) -> torch.optim.Optimizer:
    """Each method at its own learning rate; only the head learns in the probe (and in LP-FT's probe phase)."""
    if method == "probe":
        backbones.freeze_backbone(model)
        return head_optimizer(cfg, model)
    lrs = {"scratch": cfg.effective("scratch_lr"),
           "scratch_resnet18": cfg.resnet18_scratch_lr or BACKBONE_DEFAULTS["resnet18"]["scratch_lr"]}
    return torch.optim.SGD(model.parameters(), lr=lrs.get(method, cfg.effective("lr")), momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def head_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """The head alone at probe_lr (the probe's, and LP-FT's probe phase): no momentum for weights that never change."""
    return torch.optim.SGD(backbones.head_parameters(model), lr=cfg.effective("probe_lr"), momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def enter_phase(model: nn.Module, method: str, step: int, probe_steps: int) -> bool:
    """Set the model up for this step's phase; True while probing (only the head learns). LP-FT (Kumar et al. 2022)
    probes first, so fine-tuning starts from a head that fits the features, not a random one whose large early
    gradients rewrite the backbone. A frozen backbone stays in eval mode, or BatchNorm's statistics would drift."""
    probing = method == "probe" or step < probe_steps
    if probe_steps:  # LP-FT unfreezes the backbone when its fine-tuning phase begins
        for p in backbones.backbone_parameters(model):
            p.requires_grad_(not probing)
    model.train(not probing)
    return probing


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    if cfg.network == "resnet18" and cfg.weights == "source":  # pre-train ResNet-18 on Fashion-MNIST here
        sub = run.variant("source")
        metrics["source_accuracy"] = (dist.broadcast_object(sub.result) or pretrain_source(cfg, sub))[
            "source_accuracy"]
    draws = transfer_draws.target_sets(cfg)  # one per label draw (the Fashion-MNIST study), sharing their images
    frozen = frozen_features(cfg, draws[0].images, run.device)

    def trained(target: TargetImages, k: int, method: str) -> dict[str, float]:
        sub = run.variant(variant_name(method, k, target.draw))  # every rank agrees on what is done
        return dist.broadcast_object(sub.result) or train_target(cfg, sub, method, k, target, frozen)

    measured = each_arm(draws, cfg.budgets, methods(cfg), trained)
    metrics.update(transfer_draws.study_metrics(cfg.study, measured, SCRATCH_ARMS, PRETRAINED_ARMS, list(METHODS)))
    if run.is_main:
        if cfg.study == "fashion":  # what `across_seeds` pools
            transfer_draws.save_draws(run.dir, cfg.seed, measured)
        plot_accuracy(cfg, run, metrics, draws[0])
    return metrics


def frozen_features(cfg: Config, images: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """Lite0's features of every image, once, before any model is seeded: the probe's backbone does not change
    (ResNet-18 at 28 px is cheap enough to run whole). Under torchrun each rank computes its share."""
    if cfg.network != "lite0":
        return None
    share = dist.shard_range(len(images))
    features = backbones.lite0_imagenet_features(images[share], device)
    if dist.is_distributed():  # zero rows above and below this rank's share
        features = dist.all_reduce_sum(F.pad(features, (0, 0, share.start, len(images) - share.stop)))
    return features


def check_launch(cfg: Config) -> None:
    backbones.check_weights(cfg.network, cfg.weights, cfg.download)  # before anything is written
    dist.check_batches(batch_size=cfg.batch_size)  # each rank takes its share of every global batch
    if cfg.data:  # list, split and read the user's images before the run directory exists: bad data writes nothing
        target_data.target_images(cfg)


def train_target(cfg: Config, run: Run, method: str, per_class: int, target: TargetImages,
                 frozen: torch.Tensor | None) -> dict[str, float]:
    """One method at one label budget: the same steps and batches for every method."""
    seed, train = cfg.seed if target.draw is None else target.draw, target.train[per_class]
    x_train, y_train = target.pixels(arm_backbone(cfg, method))[train], target.labels[train]
    cached = frozen[train] if frozen is not None and method in ("probe", "lpft") else None
    model = build_target_model(cfg, run, method, len(target.classes), seed)
    if dist.is_distributed():  # BatchNorm's statistics over the global batch, as in one process
        model = dist.convert_sync_batchnorm(model)
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
    batch, trained = min(cfg.batch_size, len(train)), None
    for step, idx in trainer.steps(dist.shard_batches(len(train), batch, seed, trainer.start)):
        probing = enter_phase(model, method, step, probe_steps)
        on_features = cached is not None and probing  # a probe on cached features runs only the head
        if trained is None or step == probe_steps:  # DDP syncs the parameters that need a gradient when it is built
            trained = dist.wrap_ddp(head(model) if on_features else model, run.device, split_rng=trained is None)
        x, y = take(idx, cached if on_features else x_train, y_train, device=run.device)
        with autocast(run.device, cfg.amp):
            loss = F.cross_entropy(trained(x if on_features else to_input(x, arm_backbone(cfg, method))), y)
        if step < probe_steps:
            trainer.backward(loss, phases["head_optimizer"])
            phases["head_scheduler"].step()
        else:
            trainer.backward(loss)
            scheduler.step()
    result = test_and_val(cfg, model, method, target, frozen, run.device)
    run.log({f"eval/{k}": v for k, v in result.items()}, cfg.steps)
    return run.finish(result)


def pretrain_source(cfg: Config, run: Run) -> dict[str, float]:
    """Train ResNet-18 on Fashion-MNIST (a resumable variant), cached: later runs copy it (deterministic on CPU)."""
    cached = cache_dir() / f"{target_data.source_cache_name(cfg, run.device)}.pt"
    data = fashion_mnist.load(download=cfg.download)
    x_test, y_test = fashion_mnist.as_float(data.test_images[:cfg.source_eval]), data.test_labels[:cfg.source_eval]
    if cached.is_file():  # under torchrun every rank reads it; rank 0 keeps a copy in the run
        if run.is_main:
            (run.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached, run.checkpoint_path())
        model = load_source(cached)
        return run.finish({"source_accuracy": accuracy(model, x_test, y_test, run.device, 250), "from_cache": 1.0})

    x_train, y_train, _, _ = fashion_mnist.subsets(data=data)
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
    return run.finish({"source_accuracy": accuracy(model, x_test, y_test, run.device, 250), "from_cache": 0.0})


# ---- evaluation ----------------------------------------------------------------------------------
def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Every target model's test (and validation) accuracy, recomputed from its checkpoint, and what follows."""
    draws = transfer_draws.target_sets(cfg)
    frozen = frozen_features(cfg, draws[0].images, run.device)

    def scored(target: TargetImages, k: int, method: str) -> dict[str, float]:
        model = load_target_model(cfg, run, method, k, len(target.classes), target.draw)
        return test_and_val(cfg, model, method, target, frozen, run.device)

    measured = each_arm(draws, cfg.budgets, methods(cfg), scored)
    return transfer_draws.study_metrics(cfg.study, measured, SCRATCH_ARMS, PRETRAINED_ARMS, list(METHODS))


def across_seeds(run_dirs: list[Path]) -> dict[str, float]:
    """The runs' draws pooled (the bench's 3 seeds: 15): each arm's means, the paired differences, t-intervals."""
    return transfer_draws.summarise(transfer_draws.pool(run_dirs), SCRATCH_ARMS, PRETRAINED_ARMS)


def test_and_val(cfg: Config, model: nn.Module, method: str, target: TargetImages, frozen: torch.Tensor | None,
                 device: torch.device) -> dict[str, float]:
    """Test (and validation) accuracy in eval mode; a probe's head reads the frozen features computed once."""
    splits = {"accuracy": target.test, **({"val_accuracy": target.val} if target.val is not None else {})}
    backbone = arm_backbone(cfg, method)
    if method == "probe" and frozen is not None:
        model, images = head(model), frozen
    else:  # uint8 images scaled batch by batch
        model, images = nn.Sequential(InputScale(backbone), model), target.pixels(backbone)
    return {key: accuracy(model, images[i], target.labels[i], device, batch_size=250) for key, i in splits.items()}


def load_target_model(cfg: Config, run: Run, method: str, per_class: int, classes: int, draw: int | None) -> nn.Module:
    """A trained target model from its checkpoint, in eval mode."""
    model = (Lite0Classifier(classes, pretrained=False) if arm_backbone(cfg, method) == "lite0"
             else resnet18_grey(num_classes=classes))
    run.variant(variant_name(method, per_class, draw)).load(model.to(run.device))
    return model.eval()


def load_source(path: Path) -> nn.Module:  # recipe checked, not the hash: a cached copy has its maker's
    model = resnet18_grey(num_classes=10)
    model.load_state_dict(load_checkpoint(path, "transfer")["state"]["model"])
    return model.eval()


# ---- plots ---------------------------------------------------------------------------------------
def plot_accuracy(cfg: Config, run: Run, metrics: dict[str, float | None], target: TargetImages) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for method in methods(cfg):
        ax.plot(cfg.budgets, [metrics[f"{method}_{k}_accuracy"] for k in cfg.budgets], marker="o",
                label=METHODS[method].format(cfg=cfg))
    ax.set_xscale("log")
    ax.set_xticks(list(cfg.budgets), [str(k) for k in cfg.budgets])
    source = "ImageNet" if cfg.network == "lite0" or cfg.weights == "imagenet" else "Fashion-MNIST"
    mean = f", mean of {cfg.draws} draws" if cfg.study == "fashion" else ""
    ax.set(xlabel="labelled training images per class", ylabel=f"test accuracy ({target.name})", ylim=(0, 1),
           title=f"{cfg.network} from {source} ({len(target.test)} test images{mean})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("accuracy_vs_labels"), dpi=100)
    plt.close(fig)


# ---- predict: classify your own images -----------------------------------------------------------
def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files like the run's: clothes, digits, yours")
    parser.add_argument("--method", choices=METHODS, help="whose model [best on validation; digits: finetune]")
    parser.add_argument("--labels", type=int, help="the label budget (per class) whose model to use [the largest]")
    parser.add_argument("--invert", default="auto", choices=("auto", "yes", "no"),
                        help="digits: the model saw white digits on black; auto inverts images with a brighter border")


def predict(cfg: Config, run: Run, args: argparse.Namespace) -> None:
    k = args.labels if args.labels is not None else max(cfg.budgets)
    if k not in cfg.budgets:
        raise ConfigError(f"--labels {k}: this run trained models for {', '.join(map(str, cfg.budgets))} labels "
                          "per class")
    draw = first_draw(cfg)  # the method best on validation (never test) at the largest budget, else fine-tuning
    val = {m: (run.variant(variant_name(m, max(cfg.budgets), draw)).result or {}).get("val_accuracy")
           for m in methods(cfg)}
    method = args.method or (max(val, key=val.get) if None not in val.values() else "finetune")
    size = 28 if method == "scratch_resnet18" else cfg.effective("image_size")
    images, classes = target_data.prediction_images(cfg, args.images, args.invert, size)  # every file read first
    model = nn.Sequential(InputScale(arm_backbone(cfg, method)),
                          load_target_model(cfg, run, method, k, len(classes), draw))
    with torch.inference_mode():
        probs = F.softmax(model(images.to(run.device)).float(), dim=1).cpu()
    print(f"model: {method}, {k} labels per class ({run.dir / 'variants' / variant_name(method, k, draw)})")
    for image_path, p in zip(args.images, probs):
        top = p.argsort(descending=True)[:3].tolist()
        print(f"{image_path}: {classes[top[0]]}  (" + ", ".join(f"{classes[c]}: {p[c]:.3f}" for c in top) + ")")

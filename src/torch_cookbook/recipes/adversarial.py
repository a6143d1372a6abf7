"""Adversarial training on Fashion-MNIST: standard vs FGSM with random start ("fast") vs PGD training.

Seed Q65 lists four steps (model, loss, an adversarial-example generator, train on clean and adversarial
inputs) without code. This recipe writes them out: an L∞ attack (`pgd_attack`, FGSM with a random start)
crafts each training batch's adversarial half, `training_loss` mixes it with the clean half, and three
models trained the same number of steps are measured on clean test images and under a PGD-20 attack at
ε = 0.1, with an accuracy-vs-ε curve and a picture of clean vs adversarial examples.

Docs: docs/adversarial.md
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.nn import functional as F

from torch_cookbook.data import fashion_mnist
from torch_cookbook.engine.config import BaseConfig, ConfigError, Target, param
from torch_cookbook.engine.loop import accuracy, autocast, batches, cosine_decay, grad_scaler, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.nn.attacks import ATTACKS, fgsm, pgd_linf

seed_question = "Q65 Adversarial training"
summary = "Fashion-MNIST CNN: standard vs FGSM-RS vs PGD adversarial training; clean and PGD-20 accuracy at ε=0.1."


@dataclass
class Config(BaseConfig):
    steps: int = param(1500, "training steps per variant", low=1)
    batch_size: int = param(128, "minibatch size", low=2)
    lr: float = param(2e-3, "Adam peak learning rate (cosine decay to 0)", low=0, low_open=True)
    width: int = param(32, "channels of the first conv layer (the second has twice as many)", low=1)
    eps: float = param(0.1, "L∞ budget ε in pixel units (images in [0, 1]) of the evaluation attack",
                       low=0, high=1, low_open=True)
    train_eps: float = param(0.0, "L∞ budget of the training attacks (0 = same as --eps); evaluation always "
                             "uses --eps", low=0, high=1)
    # The default was chosen on validation, never on the test set (docs/adversarial.md).
    adv_weight: float = param(0.5, "weight w of the adversarial term in the fgsm_rs/pgd training loss "
                              "(1 - w) CE(clean) + w CE(adversarial); 1 = attacked only (Madry et al.)",
                              low=0, high=1)
    train_pgd_steps: int = param(3, "PGD steps per training batch (step size 2.5 ε / steps)", low=1)
    fgsm_alpha: float = param(1.25, "FGSM-RS step size as a multiple of ε (Wong et al. use 1.25)", low=0,
                              low_open=True)
    attack: str = param("pgd", "attack used to measure robust accuracy", choices=ATTACKS)
    eval_attack_steps: int = param(20, "PGD steps of the evaluation attack (step size 2.5 ε / steps)", low=1)
    eval_subset: int = param(1000, "robust accuracy on the first N test (or validation) images (clean accuracy "
                             "uses all)", low=1)
    curve_eps: tuple[float, ...] = param((0.05, 0.1, 0.15, 0.2), "ε values of the accuracy-vs-ε curve",
                                         low=0, high=1, low_open=True)
    curve_subset: int = param(300, "images per point of the accuracy-vs-ε curve", low=1)
    eval_every: int = param(250, "log clean test accuracy every N steps", low=1)
    train_subset: int = param(0, "use only the first N training images (0 = all 60,000)", low=0)
    test_subset: int = param(0, "use only the first N test images (0 = all 10,000)", low=0)
    val_size: int = param(0, "hold out the last N training images and measure on them instead of the test "
                          "set, metrics prefixed val_ (for choosing hyper-parameters; 0 = off, use test)", low=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        n_eval = self.val_size or self.test_subset
        if n_eval and self.eval_subset > n_eval:
            flag = "--val_size" if self.val_size else "--test_subset"
            raise ConfigError(f"--eval_subset {self.eval_subset}: larger than {flag} {n_eval}")
        if self.val_size and self.val_size >= (self.train_subset or 60_000):
            raise ConfigError(f"--val_size {self.val_size}: leaves no training images")

    @property
    def attack_eps(self) -> float:
        """The ε of the training attacks."""
        return self.train_eps or self.eps


profiles = {
    "smoke": {"steps": 12, "eval_every": 6, "width": 4, "train_subset": 1024, "test_subset": 256,
              "eval_subset": 64, "eval_attack_steps": 3, "curve_eps": (0.05, 0.1), "curve_subset": 32},
    "quick": {"steps": 300, "eval_every": 100, "width": 16, "eval_subset": 300, "curve_subset": 100},
    "full": {},
}

targets = [
    Target("pgd_robust_accuracy", ">=", 0.65),  # PGD-trained model under the evaluation attack at ε
    Target("pgd_clean_accuracy", ">=", 0.85),
    Target("standard_robust_accuracy", "<=", 0.10),  # an undefended model is broken by the same attack
]

VARIANTS = ("standard", "fgsm_rs", "pgd")


# ---- the technique: attacks, and the adversarial training loss -------------------------------------
def pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD in L∞ (Madry et al. 2018): from a uniform random point in the ε-ball, `steps` times
    x_adv ← project_ε(x_adv + α · sign(∇ₓ CE(model(x_adv), y))), then clamp to [0, 1].

    α = 2.5 ε / steps lets the attack cross the ball and come back within its budget. The loop itself is
    `torch_cookbook.nn.attacks.pgd_linf`, which takes the gradient with respect to the input only."""
    return pgd_linf(model, x, y, eps, alpha=2.5 * eps / steps, steps=steps, generator=generator)


def adversarial_batch(variant: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Config) -> torch.Tensor:
    """The attacked inputs for this batch, at the training ε: one FGSM step of `fgsm_alpha` ε from a random
    start (Wong et al. 2020) or PGD with `train_pgd_steps`. Random starts use the global torch RNG, whose
    state the checkpoint saves, so a resumed run draws the same noise."""
    eps = cfg.attack_eps
    if variant == "fgsm_rs":
        return fgsm(model, x, y, eps, random_start=True, alpha=cfg.fgsm_alpha * eps)
    return pgd_attack(model, x, y, eps, cfg.train_pgd_steps)


def training_loss(variant: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Standard: CE on the clean batch. Adversarial variants: (1 - w) CE(clean) + w CE(attacked), the mix
    of Goodfellow et al. (2015) that the seed's "train on clean and adversarial inputs" describes; w = 1 is
    Madry et al.'s attacked-only objective. The attack is crafted in eval mode (no dropout/BN here, but be
    explicit) and the loss computed in train mode."""
    w = 0.0 if variant == "standard" else cfg.adv_weight
    x_adv = None
    if w > 0:
        model.eval()
        x_adv = adversarial_batch(variant, model, x, y, cfg)
    model.train()
    with autocast(x.device, cfg.amp):
        if x_adv is None:
            return F.cross_entropy(model(x), y)
        if w == 1:
            return F.cross_entropy(model(x_adv), y)
        logits = model(torch.cat([x, x_adv]))  # one pass over both halves
        return (1 - w) * F.cross_entropy(logits[:len(x)], y) + w * F.cross_entropy(logits[len(x):], y)


class SmallCNN(nn.Module):
    """Two strided convs and an MLP head. Normalisation is inside the model so that the attacks and ε
    work in pixel units on images in [0, 1]. Strided convs instead of pooling keep it cheap on a CPU."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 5, stride=2, padding=2), nn.ReLU(),          # 28 -> 14
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),  # 14 -> 7
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.2860) / 0.3530  # Fashion-MNIST train mean/std
        return self.head(self.features(x))


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    data = load_data(cfg)
    results = {}
    for name in VARIANTS:
        sub = run.variant(name)
        results[name] = sub.result or train_variant(cfg, sub, name, data)

    models = {name: load_variant_model(cfg, run, name) for name in VARIANTS}
    x_test, y_test = data[2], data[3]
    curve = accuracy_vs_eps(cfg, models, x_test[:cfg.curve_subset], y_test[:cfg.curve_subset], run.device)
    if run.is_main:
        plot_curve(cfg, run, curve)
        plot_examples(cfg, run, models, x_test[:8], y_test[:8])

    metrics: dict[str, float | None] = {}
    for name, r in results.items():
        metrics[metric_name(cfg, f"{name}_clean_accuracy")] = r["clean_accuracy"]
        metrics[metric_name(cfg, f"{name}_robust_accuracy")] = r["robust_accuracy"]
    for name, points in curve.items():
        for eps, acc in points:
            metrics[metric_name(cfg, f"{name}_robust_accuracy_eps{eps:g}")] = acc
    return metrics


def train_variant(cfg: Config, run: Run, variant: str, data: tuple) -> dict[str, float | None]:
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(cfg.seed)  # same initialisation for every variant
    model = SmallCNN(cfg.width).to(run.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # cosine decay: adversarial training is known to overfit late in training at a high learning rate
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(cfg.steps))
    trainer = Trainer(run, cfg.steps, every=cfg.eval_every, description=run.name, model=model,
                      optimizer=optimizer, scheduler=scheduler, scaler=grad_scaler(run.device, cfg.amp))

    for step, idx in trainer.steps(batches(len(x_train), cfg.batch_size, cfg.seed, trainer.start)):
        x, y = take(idx, x_train, y_train, device=run.device)
        loss = training_loss(variant, model, x, y, cfg)  # the attack runs inside, on this batch
        trainer.backward(loss)
        scheduler.step()
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            clean = accuracy(model, x_test, y_test, run.device)
            run.log({"train/loss": loss.item(), f"eval/{metric_name(cfg, 'clean_accuracy')}": clean}, done)

    return run.finish(measure(cfg, model, x_test, y_test, run.device))


# ---- evaluation ----------------------------------------------------------------------------------
def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, cfg: Config,
                    device: torch.device, batch_size: int = 500) -> float:
    """Accuracy on adversarial examples made by the evaluation attack against this model (eval mode).

    The PGD random start comes from a generator seeded by the run's seed, so `cookbook eval` and a
    resumed run measure the same number."""
    model.eval()
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 12345)
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        if cfg.attack == "fgsm":
            x_adv = fgsm(model, xb, yb, eps)
        else:
            x_adv = pgd_attack(model, xb, yb, eps, cfg.eval_attack_steps, generator=gen)
        with torch.inference_mode():
            correct += (model(x_adv).argmax(1) == yb).sum().item()
    return correct / len(x)


def measure(cfg: Config, model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor,
            device: torch.device) -> dict[str, float]:
    """Clean accuracy on the whole evaluation set (test, or validation with `val_size`), robust accuracy on
    its first `eval_subset` images."""
    n = cfg.eval_subset
    return {"clean_accuracy": accuracy(model, x_test, y_test, device),
            "robust_accuracy": robust_accuracy(model, x_test[:n], y_test[:n], cfg.eps, cfg, device)}


def accuracy_vs_eps(cfg: Config, models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                    device: torch.device) -> dict[str, list[tuple[float, float]]]:
    return {name: [(eps, robust_accuracy(model, x, y, eps, cfg, device)) for eps in cfg.curve_eps]
            for name, model in models.items()}


def load_variant_model(cfg: Config, run: Run, name: str) -> nn.Module:
    model = SmallCNN(cfg.width).to(run.device)
    run.variant(name).load(model)
    return model.eval()


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Clean and robust accuracy of each variant, recomputed from its saved checkpoint."""
    _, _, x_test, y_test = load_data(cfg)
    out = {}
    for name in VARIANTS:
        m = measure(cfg, load_variant_model(cfg, run, name), x_test, y_test, run.device)
        out[metric_name(cfg, f"{name}_clean_accuracy")] = m["clean_accuracy"]
        out[metric_name(cfg, f"{name}_robust_accuracy")] = m["robust_accuracy"]
    return out


# ---- data ----------------------------------------------------------------------------------------
def load_data(cfg: Config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, labels, evaluation images, labels), images in [0, 1] (not standardised: ε is a pixel
    budget). With `val_size` the evaluation set is the last `val_size` of the training images, and the
    model trains on the rest: hyper-parameters are chosen there, never on the test set."""
    x_train, y_train, x_test, y_test = fashion_mnist.subsets(cfg.train_subset, cfg.test_subset, normalize=False)
    if cfg.val_size:
        cut = len(x_train) - cfg.val_size
        return x_train[:cut], y_train[:cut], x_train[cut:], y_train[cut:]
    return x_train, y_train, x_test, y_test


def metric_name(cfg: Config, name: str) -> str:
    """Validation runs report val_* metrics, so they can never be mistaken for (or checked as) test results."""
    return f"val_{name}" if cfg.val_size else name


# ---- plots ---------------------------------------------------------------------------------------
def plot_curve(cfg: Config, run: Run, curve: dict[str, list[tuple[float, float]]]) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, points in curve.items():
        eps, acc = zip(*points)
        ax.plot(eps, acc, marker="o", label=name)
    ax.axvline(cfg.eps, color="grey", linewidth=0.8, linestyle="--")
    attack = f"PGD-{cfg.eval_attack_steps}" if cfg.attack == "pgd" else "FGSM"
    ax.set(xlabel="ε (L∞, pixel units)", ylabel="robust accuracy", ylim=(0, 1),
           title=f"Fashion-MNIST under {attack} ({cfg.curve_subset} test images)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("accuracy_vs_eps"), dpi=100)
    plt.close(fig)


def plot_examples(cfg: Config, run: Run, models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor) -> None:
    """Row 1: clean images; then per model its PGD adversarial images, titled with its prediction."""
    rows = [("clean", x, models["standard"])] + [(f"adv vs {n}", None, m) for n, m in models.items()]
    fig, axes = plt.subplots(len(rows), len(x), figsize=(1.3 * len(x), 1.5 * len(rows)))
    for r, (label, images, model) in enumerate(rows):
        if images is None:
            gen = torch.Generator(device=run.device).manual_seed(cfg.seed)
            images = pgd_attack(model, x.to(run.device), y.to(run.device), cfg.eps, 20, generator=gen).cpu()
        with torch.inference_mode():
            pred = model(images.to(run.device)).argmax(1).cpu()
        for c in range(len(x)):
            ax = axes[r, c]
            ax.imshow(images[c, 0], cmap="gray", vmin=0, vmax=1)
            ok = pred[c] == y[c]
            ax.set_title(fashion_mnist.CLASSES[pred[c]][:9], fontsize=7, color="green" if ok else "red")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(f"clean vs PGD-20 examples at ε={cfg.eps:g} (title: prediction; red = wrong)", fontsize=8)
    fig.tight_layout()
    fig.savefig(run.plot_path("examples"), dpi=90)
    plt.close(fig)

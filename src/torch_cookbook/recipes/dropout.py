"""Dropout: how much does it close the gap between training and test accuracy? (docs/dropout.md)

Measured where overfitting is guaranteed: an MLP and a small CNN trained long on 2,000 Fashion-MNIST
images, with dropout p in {0, 0.1, 0.3, 0.5} after the MLP's hidden activations, and element-wise Dropout
vs channel-wise Dropout2d after the CNN's conv blocks. Each setting reports train and test accuracy and
their gap. The best p is chosen on a held-out validation split by cross-entropy, never on the test set:
the MLP's validation accuracies differ by less than their noise, its validation losses do not. It also
shows what `model.eval()` does: eval mode switches dropout off, train mode drops units and scales the
kept ones by 1/(1-p), and forgetting `model.eval()` (as the seed does) costs test accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from torch_cookbook.data import fashion_mnist
from torch_cookbook.engine.config import BaseConfig, Target, param
from torch_cookbook.engine.loop import accuracy, autocast, batches, cosine_decay, grad_scaler, predict_batches, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import ConfigError

seed_question = "Q36 Dropout"
summary = "MLP and CNN on 2,000 Fashion-MNIST images with dropout p in {0..0.5}: train/test gap, eval mode."


@dataclass
class Config(BaseConfig):
    ps: list[float] = param([0.0, 0.1, 0.3, 0.5], "dropout probabilities of the MLP variants",
                            low=0, high=1, high_open=True)
    cnn_p: float = param(0.3, "dropout probability of the CNN variants (Dropout vs Dropout2d)",
                         low=0, high=1, high_open=True)
    train_size: int = param(2000, "training images (a small subset, so that the models overfit)", low=64)
    val_size: int = param(20000, "held-out training images (disjoint from the training subset) used to choose p",
                          low=100)
    select_by: str = param("val_loss", "how the best p is chosen on the validation split (never on test)",
                           choices=("val_loss", "val_accuracy"))
    steps: int = param(1000, "training steps per MLP variant (32 epochs of 2,000 images)", low=1)
    cnn_steps: int = param(2000, "training steps per CNN variant (dropout slows a CNN's fitting: it needs longer)",
                           low=1)
    batch_size: int = param(64, "minibatch size", low=2)
    lr: float = param(1e-3, "Adam learning rate (cosine-decayed to 0 over the steps)", low=0, low_open=True)
    hidden: int = param(256, "units of each of the MLP's two hidden layers", low=1)
    width: int = param(16, "channels of the CNN's first conv layer (the second has twice as many)", low=1)
    eval_every: int = param(100, "log train and test accuracy every N steps", low=1)
    curve_subset: int = param(2000, "test images used for the learning curves (final metrics use all)", low=100)
    eval_subset: int = param(0, "evaluate on the first N test images (0 = all 10,000)", low=0)
    include_cnn: bool = param(True, "also train the CNN variants")

    def __post_init__(self) -> None:
        super().__post_init__()
        names = [variant_name("mlp", p) for p in self.ps]
        clash = next((n for n in names if names.count(n) > 1), None)
        if clash:  # variants are named by p in percent: 0.001 and 0 would share a run directory
            raise ConfigError(f"--ps {' '.join(map(str, self.ps))}: two values name the same variant {clash}")
        if self.train_size + self.val_size > 60000:  # both come from Fashion-MNIST's 60,000 training images
            raise ConfigError(f"--train_size {self.train_size} + --val_size {self.val_size}: more than the 60,000 "
                              "Fashion-MNIST training images")


profiles = {
    "smoke": {"ps": [0.0, 0.5], "train_size": 256, "val_size": 256, "steps": 24, "cnn_steps": 24, "batch_size": 32,
              "hidden": 64, "width": 4, "eval_every": 8, "curve_subset": 256, "eval_subset": 512},
    "quick": {"steps": 400, "eval_every": 100, "eval_subset": 5000, "include_cnn": False},
    "full": {},
}

targets = [
    Target("mlp_gap_reduction", ">=", 0.30),  # 1 - gap(best p) / gap(p=0)
    Target("mlp_test_accuracy_change", ">=", 0.0),  # test accuracy(best p) - test accuracy(p=0)
]


# ---- where dropout goes ------------------------------------------------------------------------------
def make_mlp(p: float, hidden: int = 512, activation: type[nn.Module] = nn.ReLU,
             dropout_first: bool = False) -> nn.Sequential:
    """784 → hidden → hidden → 10 with dropout after each hidden activation.

    `dropout_first=True` reproduces the seed's order (Linear → Dropout → activation). For ReLU the two
    orders compute the same function (a ReLU of a masked, rescaled value is the masked, rescaled ReLU);
    for activations with f(0) != 0, such as sigmoid, they do not: a dropped unit outputs f(0) = 0.5, not 0.
    """

    def block(n_in: int) -> list[nn.Module]:
        pair = [nn.Dropout(p), activation()] if dropout_first else [activation(), nn.Dropout(p)]
        return [nn.Linear(n_in, hidden), *pair]

    return nn.Sequential(nn.Flatten(), *block(28 * 28), *block(hidden), nn.Linear(hidden, 10))


def make_cnn(p: float, channelwise: bool, width: int = 16) -> nn.Sequential:
    """conv-ReLU-pool-drop ×2 → FC-ReLU-Dropout → 10.

    After the conv blocks, `channelwise=True` uses Dropout2d (zeroes whole feature maps: neighbouring
    pixels are strongly correlated, so dropping single pixels removes little information); otherwise
    element-wise Dropout. The classifier's hidden layer always uses element-wise Dropout.
    """
    conv_drop = nn.Dropout2d if channelwise else nn.Dropout
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), conv_drop(p),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), conv_drop(p),
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, 8 * width), nn.ReLU(), nn.Dropout(p),
        nn.Linear(8 * width, 10),
    )


# ---- train one variant: dropout on while training, off while evaluating ----------------------------------
def train_variant(cfg: Config, run: Run, arch: str, p: float, channelwise: bool, data: dict) -> dict[str, float]:
    x_train, y_train = data["x_train"], data["y_train"]
    x_curve, y_curve = data["x_test"][:cfg.curve_subset], data["y_test"][:cfg.curve_subset]
    steps = cfg.steps if arch == "mlp" else cfg.cnn_steps
    torch.manual_seed(cfg.seed)  # the same initial weights for every p of one architecture
    model = build(cfg, arch, p, channelwise).to(run.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # Cosine decay to 0: dropout makes the last steps noisy; a decayed rate lets every variant settle, so the
    # comparison is between converged models and not between points on a noisy curve.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(steps))
    # Resuming restores the RNG too, so the dropout masks after a resume are the ones an uninterrupted run draws.
    trainer = Trainer(run, steps, every=cfg.eval_every, model=model, optimizer=optimizer, schedule=schedule,
                      scaler=grad_scaler(run.device, cfg.amp))

    for step, idx in trainer.steps(batches(len(x_train), cfg.batch_size, cfg.seed, trainer.start)):
        model.train()  # dropout on: accuracy() below switches to eval mode and back
        x, y = take(idx, x_train, y_train, device=run.device)
        with autocast(run.device, cfg.amp):
            loss = nn.functional.cross_entropy(model(x), y)
        trainer.backward(loss)
        schedule.step()
        done = step + 1
        if done % cfg.eval_every == 0 or done == steps:
            run.log({"train/loss": loss.item(),
                     "eval/train_accuracy": accuracy(model, x_train, y_train, run.device),
                     "eval/test_accuracy": accuracy(model, x_curve, y_curve, run.device)}, done)
    return run.finish({"p": p, **final_metrics(model, data, run.device)})


# ---- what model.eval() changes -------------------------------------------------------------------
@torch.no_grad()
def mode_demo(model: nn.Module, x: torch.Tensor, y: torch.Tensor, p: float, seed: int) -> dict[str, float]:
    """Eval mode is deterministic; train mode is random, keeps units scaled by 1/(1-p), and costs accuracy."""
    torch.manual_seed(seed)
    model.eval()
    eval_same = torch.equal(model(x[:256]), model(x[:256]))
    model.train()
    train_same = torch.equal(model(x[:256]), model(x[:256]))
    # The scale of the kept units: Dropout(p) in train mode on a tensor of ones gives 0 or 1/(1-p).
    out = nn.Dropout(p).train()(torch.ones(100_000))
    kept = out[out != 0]
    correct = sum((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item() for i in range(0, len(x), 1000))
    model.eval()
    return {"eval_mode_deterministic": float(eval_same), "train_mode_deterministic": float(train_same),
            "train_mode_kept_scale": kept.mean().item() if len(kept) else 1.0,
            "train_mode_dropped_fraction": 1.0 - len(kept) / len(out),
            "test_accuracy_without_eval_mode": correct / len(x)}


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    data = load_data(cfg)
    results = {}
    for name, (arch, p, channelwise) in variants(cfg).items():
        sub = run.variant(name)
        results[name] = sub.result or train_variant(cfg, sub, arch, p, channelwise, data)

    metrics = collect_metrics(cfg, results)
    largest = max(cfg.ps)
    model = load_variant_model(cfg, run, variant_name("mlp", largest))
    demo = mode_demo(model, data["x_test"], data["y_test"], largest, cfg.seed)
    metrics.update({f"{variant_name('mlp', largest)}_{k}": v for k, v in demo.items()})
    if run.is_main:
        plot_curves(cfg, run, results)
    return metrics


# ---- evaluation: the gap, and the best p chosen on validation --------------------------------------------
def final_metrics(model: nn.Module, data: dict, device: torch.device) -> dict[str, float]:
    """Accuracy and cross-entropy in eval mode (dropout off) on train, validation and test; gap = train - test."""
    out = {}
    for split in ("train", "val", "test"):
        logits, y = predict_batches(model, data[f"x_{split}"], device), data[f"y_{split}"]
        out[f"{split}_accuracy"] = (logits.argmax(1) == y).float().mean().item()
        out[f"{split}_loss"] = nn.functional.cross_entropy(logits, y).item()
    out["gap"] = out["train_accuracy"] - out["test_accuracy"]
    return out


def choose_best(validation: dict[str, dict[str, float]], by: str) -> str:
    """The variant with the lowest validation loss (`by="val_loss"`) or highest validation accuracy.

    It receives only validation numbers ({name: {"val_loss": ..., "val_accuracy": ...}}), so nothing measured
    on the test set can influence the choice.
    """
    if by == "val_loss":
        return min(validation, key=lambda n: validation[n]["val_loss"])
    return max(validation, key=lambda n: validation[n]["val_accuracy"])


def comparison(prefix: str, arm: dict | None, base: dict | None) -> dict[str, float | None]:
    """Gap reduction 1 - gap(arm) / gap(base) and test accuracy change of `arm` against the no-dropout `base`."""
    if arm is None or base is None:  # an arm or the baseline is not in this run's variants
        return {f"{prefix}_gap_reduction": None, f"{prefix}_test_accuracy_change": None}
    return {f"{prefix}_gap_reduction": 1.0 - arm["gap"] / base["gap"] if base["gap"] > 0 else None,
            f"{prefix}_test_accuracy_change": arm["test_accuracy"] - base["test_accuracy"]}


def collect_metrics(cfg: Config, results: dict) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for name, r in results.items():
        for k in ("train_accuracy", "val_accuracy", "test_accuracy", "gap", "val_loss"):
            metrics[f"{name}_{k}"] = r[k]
    mlp = {n: r for n, r in results.items() if n.startswith("mlp_")}
    validation = {n: {"val_loss": r["val_loss"], "val_accuracy": r["val_accuracy"]} for n, r in mlp.items()}
    best = choose_best(validation, cfg.select_by)
    metrics["mlp_best_p"] = mlp[best]["p"]
    # What the other criterion would pick, so the choice of criterion is visible in the summary.
    for by in ("val_loss", "val_accuracy"):
        metrics[f"mlp_best_p_by_{by}"] = mlp[choose_best(validation, by)]["p"]
    metrics.update(comparison("mlp", mlp[best], mlp.get("mlp_p00")))
    if cfg.include_cnn:
        for kind in ("dropout", "dropout2d"):
            arm = results.get(variant_name(f"cnn_{kind}", cfg.cnn_p))
            metrics.update(comparison(f"cnn_{kind}", arm, results.get("cnn_p00")))
    return metrics


def evaluate(cfg: Config, run: Run) -> dict[str, float | None]:
    """Train/test accuracy, gap and the best-p comparison, recomputed from each variant's checkpoint."""
    data = load_data(cfg)
    results = {}
    for name, (_, p, _) in variants(cfg).items():
        results[name] = {"p": p, **final_metrics(load_variant_model(cfg, run, name), data, run.device)}
    return collect_metrics(cfg, results)


# ---- variants, data, checkpoints -----------------------------------------------------------------
def variant_name(prefix: str, p: float) -> str:
    """mlp_p00, mlp_p50, cnn_dropout2d_p30: p in whole percent."""
    return f"{prefix}_p{round(p * 100):02d}"


def variants(cfg: Config) -> dict[str, tuple[str, float, bool]]:
    """name: (architecture, p, channel-wise): every MLP p; the CNN without dropout, with Dropout, with Dropout2d."""
    out = {variant_name("mlp", p): ("mlp", p, False) for p in cfg.ps}
    if cfg.include_cnn:
        out.update({"cnn_p00": ("cnn", 0.0, False), variant_name("cnn_dropout", cfg.cnn_p): ("cnn", cfg.cnn_p, False),
                    variant_name("cnn_dropout2d", cfg.cnn_p): ("cnn", cfg.cnn_p, True)})
    return out


def build(cfg: Config, arch: str, p: float, channelwise: bool) -> nn.Module:
    return make_mlp(p, cfg.hidden) if arch == "mlp" else make_cnn(p, channelwise, cfg.width)


def load_data(cfg: Config) -> dict[str, torch.Tensor]:
    """A seed-chosen small training subset, a disjoint validation set, and the test set."""
    data = fashion_mnist.load()
    order = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(cfg.seed))
    train, val = order[:cfg.train_size], order[cfg.train_size:cfg.train_size + cfg.val_size]
    n_test = cfg.eval_subset or len(data.test_labels)
    x = fashion_mnist.as_float(data.train_images)
    return {"x_train": x[train], "y_train": data.train_labels[train], "x_val": x[val], "y_val": data.train_labels[val],
            "x_test": fashion_mnist.as_float(data.test_images[:n_test]), "y_test": data.test_labels[:n_test]}


def load_variant_model(cfg: Config, run: Run, name: str) -> nn.Module:
    model = build(cfg, *variants(cfg)[name])
    run.variant(name).load(model)
    return model.eval()


# ---- plots ---------------------------------------------------------------------------------------
def plot_curves(cfg: Config, run: Run, results: dict) -> None:
    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for i, name in enumerate(names):
        sub = run.variant(name)
        ax = axes[0] if name.startswith("mlp") else axes[1]
        for key, style in (("eval/train_accuracy", "--"), ("eval/test_accuracy", "-")):
            curve = sub.history(key)
            if curve:
                steps, values = zip(*curve)
                ax.plot(steps, values, style, color=f"C{i}", label=name if style == "-" else None)
    for ax, title in zip(axes[:2], ("MLP", "CNN")):
        ax.set(xlabel="training step", ylabel="accuracy", ylim=(0.6, 1.01),
               title=f"{title} on {cfg.train_size} images: train (dashed) vs test (solid)")
        ax.legend(fontsize=8)
    gaps = [results[n]["gap"] for n in names]
    axes[2].bar(range(len(names)), gaps, color=[f"C{i}" for i in range(len(names))])
    axes[2].set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    axes[2].set(ylabel="train accuracy - test accuracy", title="Generalisation gap")
    fig.tight_layout()
    fig.savefig(run.plot_path("dropout_curves"), dpi=100)
    plt.close(fig)

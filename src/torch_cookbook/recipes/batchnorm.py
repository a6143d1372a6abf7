"""BatchNorm study: the same CNN with and without BatchNorm, at a normal and a 10x learning rate.

Seed Q38 explains the normalising formula. This recipe measures what it claims: how many steps each
model needs to reach 90% Fashion-MNIST test accuracy, whether it survives a 10x learning rate, and the
train/eval-mode difference that the seed leaves out (batch statistics vs running statistics).
Docs: docs/batchnorm.md
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
from torch_cookbook.engine.loop import accuracy, autocast, batches, grad_scaler, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer

seed_question = "Q38 Batch Normalization"
summary = "CNN on Fashion-MNIST with/without BatchNorm at 1x and 10x learning rate: steps to 90%, stability."


@dataclass
class Config(BaseConfig):
    steps: int = param(1500, "training steps per variant", low=1)
    batch_size: int = param(128, "minibatch size", low=2)
    lr: float = param(0.01, "the normal SGD learning rate", low=0, low_open=True)
    high_lr_factor: float = param(10.0, "the high learning rate is lr times this", low=1)
    momentum: float = param(0.9, "SGD momentum", low=0, high=1, high_open=True)
    width: int = param(16, "channels of the first conv layer (the second has twice as many)", low=1)
    eval_every: int = param(100, "evaluate test accuracy every N steps", low=1)
    target_accuracy: float = param(0.9, "the test accuracy whose first crossing is reported", low=0, high=1)
    train_subset: int = param(0, "use only the first N training images (0 = all 60,000)", low=0)
    eval_subset: int = param(0, "evaluate on the first N test images (0 = all 10,000)", low=0)
    small_batch: int = param(16, "batch size for the train-mode vs eval-mode demonstration", low=2)
    plain_max_steps: int = param(6000, "the plain CNN at 1x trains until it reaches the target accuracy, "
                                       "for up to 3x BN's steps to target and at most this many", low=1)


profiles = {
    "smoke": {"steps": 30, "eval_every": 10, "train_subset": 2048, "eval_subset": 512, "width": 4},
    "quick": {"steps": 400, "eval_every": 50, "eval_subset": 2000},
    "full": {},
}

targets = [
    Target("bn_speedup", ">=", 2.0),  # BN reaches 90% in at most half the steps of the plain CNN
    Target("bn_10x_final_accuracy", ">=", 0.90),  # and still reaches 90% at the 10x learning rate
]

VARIANTS = {  # name: (batchnorm, learning-rate multiplier); BN first: the plain budget depends on it
    "bn": (True, 1.0),
    "bn_10x": (True, None),
    "plain": (False, 1.0),
    "plain_10x": (False, None),
}


# ---- model ---------------------------------------------------------------------------------------
def make_cnn(batchnorm: bool, width: int = 16) -> nn.Sequential:
    """conv-(BN)-ReLU-pool ×2, then a classifier. With BN the conv bias is redundant (BN's β replaces it)."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(cout))
        return layers + [nn.ReLU(), nn.MaxPool2d(2)]

    hidden = 8 * width
    head: list[nn.Module] = [nn.Flatten(), nn.Linear(2 * width * 7 * 7, hidden, bias=not batchnorm)]
    if batchnorm:
        head.append(nn.BatchNorm1d(hidden))
    head += [nn.ReLU(), nn.Linear(hidden, 10)]
    return nn.Sequential(*block(1, width), *block(width, 2 * width), *head)


# ---- train one variant ---------------------------------------------------------------------------
def train_variant(cfg: Config, run: Run, batchnorm: bool, lr: float, data: tuple, steps: int,
                  stop_at_target: bool = False) -> dict[str, float | None]:
    """Train one arm for `steps` steps (or until the target accuracy, if `stop_at_target`)."""
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(cfg.seed)  # same initialisation stream for every variant
    # channels_last (NHWC): oneDNN's convolutions and pooling run without a layout reorder per layer.
    model = make_cnn(batchnorm, cfg.width).to(run.device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum)
    trainer = Trainer(run, steps, every=cfg.eval_every, description=f"{run.name} lr={lr:g}",
                      model=model, optimizer=optimizer, scaler=grad_scaler(run.device, cfg.amp))
    if trainer.extra.get("diverged_at") or (stop_at_target and trainer.extra.get("reached_at")):
        trainer.stop()  # a resumed run that had already ended

    model.train()
    for step, idx in trainer.steps(batches(len(x_train), cfg.batch_size, cfg.seed, trainer.start)):
        x, y = take(idx, x_train, y_train, device=run.device)
        with autocast(run.device, cfg.amp):
            loss = nn.functional.cross_entropy(model(x), y)
        trainer.backward(loss)
        done = step + 1
        if trainer.diverged():  # divergence at 10x is a result of this study, not a crash
            trainer.extra["diverged_at"] = done
            run.log({"train/diverged": 1.0}, done)
            trainer.stop(accept_nonfinite=True)
        elif done % cfg.eval_every == 0 or done == steps:
            acc = accuracy(model, x_test, y_test, run.device)
            run.log({"train/loss": loss.item(), "eval/accuracy": acc}, done)
            if acc >= cfg.target_accuracy and "reached_at" not in trainer.extra:
                trainer.extra["reached_at"] = done
                if stop_at_target:
                    trainer.stop()

    diverged_at = trainer.extra.get("diverged_at")
    curve = run.history("eval/accuracy")
    reached = [s for s, a in curve if a >= cfg.target_accuracy]
    final = curve[-1][1] if curve and diverged_at is None else 0.0
    return run.finish({"final_accuracy": final, "steps_to_target": reached[0] if reached else None,
                       "diverged_at": diverged_at, "lr": lr, "steps": curve[-1][0] if curve else 0})


# ---- BN in train vs eval mode --------------------------------------------------------------------
@torch.inference_mode()
def train_vs_eval_mode(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int,
                       device: torch.device) -> dict[str, float]:
    """Accuracy with running statistics (eval mode) vs per-batch statistics (train mode, small batches).

    Train mode also *updates* the running statistics, so the state is saved and restored around it.
    """
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    eval_correct = (model(x.to(device)).argmax(1).cpu() == y).float().mean().item()
    model.train()
    correct = 0.0
    for i in range(0, len(x) - batch + 1, batch):
        correct += (model(x[i:i + batch].to(device)).argmax(1).cpu() == y[i:i + batch]).sum().item()
    train_correct = correct / (len(x) // batch * batch)
    model.load_state_dict(state)
    model.eval()
    # What the running statistics hold: the first BN layer's running mean vs this batch's mean.
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    pre_bn = model[0](x[:512].to(device))
    gap = (pre_bn.mean(dim=(0, 2, 3)) - bn.running_mean).abs().mean().item()
    return {"bn_eval_mode_accuracy": eval_correct, f"bn_train_mode_accuracy_bs{batch}": train_correct,
            "bn_running_mean_gap": gap}


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    data = fashion_mnist.subsets(cfg.train_subset, cfg.eval_subset)
    results = {}
    for name, (batchnorm, multiplier) in VARIANTS.items():
        sub = run.variant(name)
        lr = cfg.lr * (multiplier if multiplier is not None else cfg.high_lr_factor)
        steps, stop_at_target = cfg.steps, False
        if name == "plain":
            # Measure the plain CNN's own steps to target: let it train up to 3x BN's steps (at least
            # `steps`). If it still has not reached the target, the speedup is reported as a lower bound.
            bn_steps = results["bn"]["steps_to_target"]
            steps = min(cfg.plain_max_steps, max(cfg.steps, 3 * bn_steps)) if bn_steps else cfg.steps
            stop_at_target = True
        results[name] = sub.result or train_variant(cfg, sub, batchnorm, lr, data, steps, stop_at_target)

    bn_model = load_variant_model(cfg, run, "bn")
    mode_metrics = train_vs_eval_mode(bn_model, data[2][:2048], data[3][:2048], cfg.small_batch, run.device)
    plot_curves(cfg, run)

    plain_steps = results["plain"]["steps_to_target"]
    bn_steps = results["bn"]["steps_to_target"]
    # If the plain CNN never reaches the target, its step count exceeds its budget: a lower bound.
    speedup = None if bn_steps is None else (plain_steps or results["plain"]["steps"]) / bn_steps
    metrics: dict[str, float | None] = {"bn_speedup": speedup,
                                        "plain_reached_target": float(plain_steps is not None),
                                        "plain_trained_steps": results["plain"]["steps"]}
    for name, r in results.items():
        metrics[f"{name}_final_accuracy"] = r["final_accuracy"]
        metrics[f"{name}_steps_to_target"] = r["steps_to_target"]
    metrics.update(mode_metrics)
    return metrics


def load_variant_model(cfg: Config, run: Run, name: str) -> nn.Module:
    model = make_cnn(VARIANTS[name][0], cfg.width).to(run.device)
    run.variant(name).load(model)
    return model.eval()


def plot_curves(cfg: Config, run: Run) -> None:
    if not run.is_main:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in VARIANTS:
        curve = run.variant(name).history("eval/accuracy")
        if curve:
            steps, accs = zip(*curve)
            ax.plot(steps, accs, label=name, linestyle="-" if "10x" not in name else "--")
    ax.axhline(cfg.target_accuracy, color="grey", linewidth=0.8)
    ax.set(xlabel="training step", ylabel="test accuracy", ylim=(0.5, 1.0),
           title=f"BatchNorm: SGD lr={cfg.lr:g} and {cfg.high_lr_factor:g}x")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("learning_curves"), dpi=110)
    plt.close(fig)


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Final test accuracy of each variant, recomputed from its saved checkpoint."""
    _, _, x_test, y_test = fashion_mnist.subsets(cfg.train_subset, cfg.eval_subset)
    out = {}
    for name in VARIANTS:
        result = run.variant(name).result or {}
        if result.get("diverged_at") is not None:
            out[f"{name}_final_accuracy"] = 0.0
            continue
        model = load_variant_model(cfg, run, name)
        out[f"{name}_final_accuracy"] = accuracy(model, x_test, y_test, run.device)
    return out

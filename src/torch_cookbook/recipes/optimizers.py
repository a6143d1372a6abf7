"""Eight optimizers, one model, one budget: SGD, momentum, Nesterov, Adagrad, Adadelta, RMSprop, Adam, AdamW.

Seed Q64 lists PyTorch's optimizers in prose. This recipe trains the same MLP on Fashion-MNIST with each
of them under the same step budget and learning-rate schedule, by one protocol for all eight:
1. sweep: three learning rates per optimizer, each trained for a short budget and scored on a validation
   split held out from the training images (never on the test set);
2. final: the best learning rate of each sweep trained for the full budget, scored on the test set.
It also draws each optimizer's path on the Rosenbrock function and on an ill-conditioned quadratic, and
measures how much state each keeps per parameter. Results and the update rules: docs/optimizers.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from torch_cookbook.data import fashion_mnist
from torch_cookbook.engine.config import BaseConfig, Target, param
from torch_cookbook.engine.loop import accuracy, autocast, batches, cosine_decay, grad_scaler, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.nn.mlp import make_mlp

seed_question = "Q64 Optimizers"
summary = "MLP on Fashion-MNIST with 8 optimizers × an LR sweep: accuracy, speed, state; 2-D trajectories."

# The middle of each sweep: the usual starting learning rate for this model size.
BASE_LR = {"sgd": 0.1, "momentum": 0.03, "nesterov": 0.03, "adagrad": 0.03, "adadelta": 1.0,
           "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3}
OPTIMIZERS = tuple(BASE_LR)


@dataclass
class Config(BaseConfig):
    optimizers: list[str] = param(list(OPTIMIZERS), "optimizers to compare", choices=OPTIMIZERS)
    lr_scales: list[float] = param([0.3, 1.0, 3.0], "each optimizer's sweep: its base learning rate times these",
                                   low=0, low_open=True)
    steps: int = param(4000, "training steps of the final run of each optimizer", low=1)
    sweep_steps: int = param(200, "training steps of each learning-rate sweep point", low=1)
    batch_size: int = param(128, "minibatch size", low=1)
    hidden: int = param(256, "hidden units of the MLP", low=1)
    momentum: float = param(0.9, "momentum of SGD+momentum and SGD+Nesterov", low=0, high=1, high_open=True)
    weight_decay: float = param(0.01, "AdamW's decoupled weight decay (the others use none)", low=0)
    val_size: int = param(5000, "training images held out to choose each optimizer's learning rate", low=100)
    eval_every: int = param(200, "evaluate test accuracy of the final runs every N steps", low=1)
    target_accuracy: float = param(0.85, "the test accuracy whose first crossing is reported", low=0, high=1)
    train_subset: int = param(0, "train on the first N of the shuffled training images (0 = all)", low=0)
    eval_subset: int = param(0, "evaluate on the first N test images (0 = all 10,000)", low=0)
    trajectory_steps: int = param(500, "steps of the 2-D trajectories", low=1)


profiles = {
    "smoke": {"optimizers": ["sgd", "momentum", "adam"], "lr_scales": [1.0, 3.0], "steps": 30, "sweep_steps": 10,
              "eval_every": 10, "train_subset": 2048, "val_size": 500, "eval_subset": 500, "hidden": 32,
              "trajectory_steps": 50},
    "quick": {"lr_scales": [1.0], "steps": 600, "sweep_steps": 50, "eval_every": 100, "eval_subset": 5000},
    "full": {},
}

targets = [
    Target("adam_test_accuracy", ">=", 0.88),
    Target("momentum_test_accuracy", ">=", 0.88),
]


# ---- the optimizers ------------------------------------------------------------------------------
def make_optimizer(name: str, params, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """PyTorch's defaults except where noted; these are the settings the update-math tests check."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)  # eps 1e-10
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr)  # rho 0.9, eps 1e-6
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)  # alpha 0.99, eps 1e-8, no momentum
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)  # betas (0.9, 0.999), eps 1e-8
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def state_floats_per_parameter(optimizer: torch.optim.Optimizer) -> float:
    """Numbers of optimizer state kept per model parameter (momentum buffers, squared-gradient averages)."""
    n_params = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    n_state = sum(v.numel() for s in optimizer.state.values() for k, v in s.items()
                  if torch.is_tensor(v) and k != "step")
    return n_state / n_params


# ---- train one (optimizer, learning rate) --------------------------------------------------------
def train(cfg: Config, run: Run, name: str, lr: float, steps: int, data: dict, final: bool) -> dict:
    """Sweep points are scored on validation at the end; final runs log test accuracy every eval_every."""
    x_train, y_train = data["x_train"], data["y_train"]
    torch.manual_seed(cfg.seed)  # the same initial weights for every optimizer
    # 784 → hidden → 10 on flattened images: small enough to train 32 times (8 optimizers x 4 runs) on a CPU.
    model = make_mlp((28 * 28, cfg.hidden, 10), flatten=False).to(run.device)
    optimizer = make_optimizer(name, model.parameters(), lr, cfg.momentum, cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(steps))  # the same for everyone
    trainer = Trainer(run, steps, every=cfg.eval_every, description=f"{run.name} lr={lr:g}", model=model,
                      optimizer=optimizer, schedule=schedule, scaler=grad_scaler(run.device, cfg.amp))
    if trainer.extra.get("diverged_at") is not None:
        trainer.stop()  # resumed after this learning rate had diverged: nothing left to train
    train_time = trainer.extra.get("train_time_s", 0.0)

    model.train()
    t0 = time.perf_counter()
    for step, idx in trainer.steps(batches(len(x_train), cfg.batch_size, cfg.seed, trainer.start)):
        x, y = take(idx, x_train, y_train, device=run.device)
        with autocast(run.device, cfg.amp):
            loss = nn.functional.cross_entropy(model(x), y)
        trainer.backward(loss)
        # Too large a learning rate is a sweep result, not a crash. Checked every step (one host read), so
        # diverged_at is the 0-based step whose loss or gradient was not finite: the steps that went well.
        if trainer.diverged():
            trainer.extra["diverged_at"] = step
            trainer.stop(accept_nonfinite=True)
            continue
        schedule.step()
        done = step + 1
        if done % cfg.eval_every == 0 or done == steps:
            record = {"train/loss": loss.item()}
            if final:
                trainer.extra["train_time_s"] = train_time + time.perf_counter() - t0
                record["eval/accuracy"] = accuracy(model, data["x_test"], data["y_test"], run.device)
            run.log(record, done)
    train_time += time.perf_counter() - t0
    trainer.extra["train_time_s"] = train_time
    trainer.save()

    diverged_at = trainer.extra.get("diverged_at")
    result = {"lr": lr, "diverged_at": diverged_at, "state_per_param": state_floats_per_parameter(optimizer),
              "train_time_s": train_time}
    if diverged_at is not None:
        return run.finish({**result, "val_accuracy": 0.0, "test_accuracy": 0.0, "steps_to_target": None})
    if not final:
        return run.finish({**result, "val_accuracy": accuracy(model, data["x_val"], data["y_val"], run.device)})
    curve = run.history("eval/accuracy")
    reached = [s for s, a in curve if a >= cfg.target_accuracy]
    return run.finish({**result, "test_accuracy": curve[-1][1], "steps_to_target": reached[0] if reached else None})


# ---- 2-D trajectories ----------------------------------------------------------------------------
def rosenbrock(p: torch.Tensor) -> torch.Tensor:
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def ill_conditioned(p: torch.Tensor) -> torch.Tensor:
    """A quadratic with curvatures 1 and 50 along x and y: condition number 50."""
    return 0.5 * (p[0] ** 2 + 50 * p[1] ** 2)


# (function, start, optimum, learning rate per optimizer): hand-picked so each moves visibly and stays stable.
PROBLEMS = {
    "rosenbrock": (rosenbrock, (-1.5, 2.0), (1.0, 1.0),
                   {"sgd": 1e-3, "momentum": 1e-3, "nesterov": 5e-4, "adagrad": 1.0, "adadelta": 5.0,
                    "rmsprop": 0.05, "adam": 0.1, "adamw": 0.1}),
    "ill_conditioned": (ill_conditioned, (-4.0, 1.0), (0.0, 0.0),
                        {"sgd": 0.035, "momentum": 0.005, "nesterov": 0.005, "adagrad": 0.5, "adadelta": 5.0,
                         "rmsprop": 0.02, "adam": 0.1, "adamw": 0.1}),
}


def trajectory(problem: str, name: str, steps: int, momentum: float = 0.9) -> torch.Tensor:
    """(steps + 1, 2) positions of `name` minimising a 2-D function from the problem's start point."""
    fn, start, _, lrs = PROBLEMS[problem]
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer(name, [p], lrs[name], momentum, weight_decay=0.0)  # no decay: same optimum
    path = [p.detach().clone()]
    for _ in range(steps):
        optimizer.zero_grad()
        fn(p).backward()
        optimizer.step()
        path.append(p.detach().clone())
    return torch.stack(path)


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    data = load_data(cfg)
    sweep, final = {}, {}
    for name in cfg.optimizers:
        points = []
        for scale, lr in zip(cfg.lr_scales, sweep_lrs(cfg, name)):
            sub = run.variant(f"sweep_{name}_x{scale:g}")
            points.append(sub.result or train(cfg, sub, name, lr, cfg.sweep_steps, data, final=False))
        sweep[name] = points
        best = max(points, key=lambda r: r["val_accuracy"])  # the first of equals: the smaller lr
        sub = run.variant(f"final_{name}")
        final[name] = sub.result or train(cfg, sub, name, best["lr"], cfg.steps, data, final=True)

    paths = {problem: {name: trajectory(problem, name, cfg.trajectory_steps, cfg.momentum)
                       for name in cfg.optimizers} for problem in PROBLEMS}
    if run.is_main:
        plot_sweep_and_curves(cfg, run, sweep, final)
        plot_trajectories(cfg, run, paths)

    metrics: dict[str, float | None] = {}
    for name, r in final.items():
        metrics[f"{name}_best_lr"] = r["lr"]
        metrics[f"{name}_test_accuracy"] = r["test_accuracy"]
        metrics[f"{name}_steps_to_target"] = r["steps_to_target"]
        metrics[f"{name}_state_per_param"] = r["state_per_param"]
        metrics[f"{name}_train_time_s"] = r["train_time_s"]
    for problem, (_, _, optimum, _) in PROBLEMS.items():
        for name, path in paths[problem].items():
            metrics[f"{name}_{problem}_final_distance"] = (path[-1] - torch.tensor(optimum)).norm().item()
    return metrics


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Each optimizer's final test accuracy, recomputed from its saved checkpoint."""
    data = load_data(cfg)
    out = {}
    for name in cfg.optimizers:
        sub = run.variant(f"final_{name}")
        if (sub.result or {}).get("diverged_at") is not None:
            out[f"{name}_test_accuracy"] = 0.0
            continue
        model = make_mlp((28 * 28, cfg.hidden, 10), flatten=False).to(run.device)
        sub.load(model)
        out[f"{name}_test_accuracy"] = accuracy(model, data["x_test"], data["y_test"], run.device)
    return out


# ---- sweep and data ------------------------------------------------------------------------------
def sweep_lrs(cfg: Config, name: str) -> list[float]:
    return [BASE_LR[name] * s for s in cfg.lr_scales]


def load_data(cfg: Config) -> dict[str, torch.Tensor]:
    """Flattened, standardised images as tensors: train / val (held out by seed) / test."""
    data = fashion_mnist.load()
    order = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(cfg.seed))
    val, train = order[:cfg.val_size], order[cfg.val_size:]
    if cfg.train_subset:
        train = train[:cfg.train_subset]
    n_test = cfg.eval_subset or len(data.test_labels)
    x_all = fashion_mnist.as_float(data.train_images).flatten(1)
    return {"x_train": x_all[train], "y_train": data.train_labels[train],
            "x_val": x_all[val], "y_val": data.train_labels[val],
            "x_test": fashion_mnist.as_float(data.test_images[:n_test]).flatten(1), "y_test": data.test_labels[:n_test]}


# ---- plots ---------------------------------------------------------------------------------------
def plot_sweep_and_curves(cfg: Config, run: Run, sweep: dict, final: dict) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (name, points) in enumerate(sweep.items()):
        scales, accs = cfg.lr_scales, [p["val_accuracy"] for p in points]
        ax1.plot(scales, accs, marker="o", color=f"C{i}", label=name)
        curve = run.variant(f"final_{name}").history("eval/accuracy")
        if curve:
            steps, values = zip(*curve)
            ax2.plot(steps, values, color=f"C{i}", label=f"{name} (lr={final[name]['lr']:g})")
    ax1.set(xscale="log", xlabel="learning rate / the optimizer's base rate", ylabel="validation accuracy",
            title=f"Learning-rate sweep ({cfg.sweep_steps} steps each)")
    ax2.axhline(0.88, color="grey", linewidth=0.8)
    ax2.set(xlabel="training step", ylabel="test accuracy", ylim=(0.6, 0.92),
            title=f"Best learning rate, {cfg.steps} steps, cosine decay")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run.plot_path("sweep_and_curves"), dpi=100)
    plt.close(fig)


def plot_trajectories(cfg: Config, run: Run, paths: dict) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    views = {"rosenbrock": ((-2, 2), (-1, 3)), "ill_conditioned": ((-4.5, 1), (-1.5, 1.5))}
    for ax, (problem, (xlim, ylim)) in zip(axes, views.items()):
        fn, start, optimum, _ = PROBLEMS[problem]
        gx, gy = torch.meshgrid(torch.linspace(*xlim, 200), torch.linspace(*ylim, 200), indexing="xy")
        z = fn(torch.stack([gx, gy]))
        ax.contour(gx, gy, torch.log1p(z), levels=25, cmap="Greys", linewidths=0.6)
        for i, (name, path) in enumerate(paths[problem].items()):
            ax.plot(path[:, 0], path[:, 1], color=f"C{i}", linewidth=1.2, label=name)
        ax.plot(*start, "ko")
        ax.plot(*optimum, "r*", markersize=12)
        ax.set(xlim=xlim, ylim=ylim, title=f"{problem.replace('_', '-')}: {cfg.trajectory_steps} steps")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(run.plot_path("trajectories"), dpi=100)
    plt.close(fig)

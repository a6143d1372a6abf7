"""Half-precision training: fp32, pure fp16 (`.half()`), fp16 autocast + GradScaler, bf16 autocast.

Seed Q68 suggests converting the model and the inputs to 16-bit. That is the fragile way: fp16 has a
tiny range and 11 bits of precision, so small gradients flush to zero and small updates vanish when
added to fp16 weights. What works instead: `torch.autocast` runs the matmuls in 16 bit but keeps fp32
master weights, and for fp16 a `GradScaler` multiplies the loss before backward so the gradients stay
representable, then divides them again (skipping the step and lowering the scale when they overflow).
bf16 has fp32's range, so it needs no scaler. The same MLP is trained all four ways; accuracy, step
time, memory saved for backward, gradient underflow in pure fp16 and the loss scale are measured.
`--amp` does not apply here: the recipe runs every precision itself (VARIANTS). docs/amp.md has results.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from torch_cookbook.data import fashion_mnist
from torch_cookbook.engine.config import BaseConfig, Target, param
from torch_cookbook.engine.loop import accuracy, autocast, batches, cosine_decay, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import ConfigError
from torch_cookbook.nn.mlp import make_mlp

seed_question = "Q68 Half-precision training"
summary = ("The same MLP in fp32, pure fp16, fp16 autocast + GradScaler and bf16 autocast: accuracy, step time, "
           "memory, gradient underflow, loss scale.")


@dataclass
class Config(BaseConfig):
    steps: int = param(1000, "training steps per variant", low=1)
    batch_size: int = param(128, "minibatch size", low=1)
    lr: float = param(0.05, "peak SGD learning rate (cosine decay to 0 over the steps)", low=0, low_open=True)
    momentum: float = param(0.9, "SGD momentum", low=0, high=1, high_open=True)
    hidden: int = param(128, "width of the MLP's two hidden layers (raise it on a GPU: a matmul-heavy model)",
                        low=1)
    eval_every: int = param(100, "evaluate, measure underflow and checkpoint every N steps", low=1)
    scale_log_every: int = param(10, "log the GradScaler's loss scale every N steps", low=1)
    init_scale: float = param(65536.0, "the GradScaler's initial loss scale", low=1)
    growth_interval: int = param(200, "GradScaler: double the scale after this many overflow-free steps", low=1)
    probe_scale: float = param(1024.0, "fixed loss scale used to measure underflow 'with loss scaling' in pure fp16",
                               low=1)
    train_subset: int = param(0, "use the first N training images (0 = all 60,000)", low=0)
    eval_subset: int = param(0, "evaluate on the first N test images (0 = all 10,000)", low=0)
    variants: list[str] = param(["fp32", "fp16_pure", "fp16_autocast", "bf16_autocast"], "precisions to train",
                                choices=("fp32", "fp16_pure", "fp16_autocast", "bf16_autocast"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if "fp32" not in self.variants:
            raise ConfigError("--variants: must include fp32, the reference every other precision is compared to")


profiles = {
    "smoke": {"steps": 20, "eval_every": 10, "scale_log_every": 2, "growth_interval": 5, "train_subset": 2048,
              "eval_subset": 500, "hidden": 32},
    "quick": {"steps": 300, "eval_every": 50, "eval_subset": 2000},
    "full": {},
}

targets = [
    Target("max_autocast_accuracy_gap_points", "<=", 0.3),  # |autocast - fp32| test accuracy, percentage points
    Target("perf/gpu_autocast_speedup", ">=", 2.0),  # measured on a CUDA device only (None on CPU)
]

# name: (autocast mode, model in fp16, GradScaler)
VARIANTS = {
    "fp32": ("off", False, False),
    "fp16_pure": ("off", True, False),  # the seed's advice: model.half(), inputs.half()
    "fp16_autocast": ("fp16", False, True),
    "bf16_autocast": ("bf16", False, False),
}


# ---- the forward pass in 16 bit ------------------------------------------------------------------
def forward_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: str, half: bool,
                 device: torch.device) -> torch.Tensor:
    if half:
        x = x.half()  # pure fp16: inputs, weights, activations and gradients all in fp16
    with autocast(device, amp):
        logits = model(x)
    return nn.functional.cross_entropy(logits.float(), y)  # the loss itself in fp32 (autocast does the same)


# ---- train one variant: autocast and the GradScaler in the loop ----------------------------------
def train_variant(cfg: Config, run: Run, name: str, data: tuple) -> dict[str, float | None]:
    x_train, y_train, x_test, y_test = data
    amp, half, use_scaler = VARIANTS[name]
    device = run.device
    torch.manual_seed(cfg.seed)  # the same initial weights for every variant
    model = make_mlp((28 * 28, cfg.hidden, cfg.hidden, 10)).to(device)
    if half:
        model = model.half()  # weights, momentum buffers and updates in fp16: no fp32 master copy
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(cfg.steps))
    scaler = torch.amp.GradScaler(device.type, init_scale=cfg.init_scale, growth_interval=cfg.growth_interval,
                                  enabled=use_scaler)
    trainer = Trainer(run, cfg.steps, every=cfg.eval_every, model=model, optimizer=optimizer, scheduler=schedule,
                      scaler=scaler)
    if trainer.extra.get("diverged_at") is not None:
        trainer.stop()  # resumed after this precision had diverged: nothing left to train
    skipped = trainer.extra.get("skipped_steps", 0)
    step_time, timed = trainer.extra.get("step_time", 0.0), trainer.extra.get("timed", 0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    model.train()
    for step, idx in trainer.steps(batches(len(x_train), cfg.batch_size, cfg.seed, trainer.start)):
        x, y = take(idx, x_train, y_train, device=device)
        t0 = time.perf_counter()
        loss = forward_loss(model, x, y, amp, half, device)  # autocast: matmuls in 16 bit, weights fp32
        trainer.record(loss)
        # A loss that overflows (pure fp16 can) is a result here, not a crash. It is read every step, before
        # the update, so diverged_at (0-based) counts the finite steps and the checkpoint keeps their weights.
        if trainer.diverged():
            trainer.extra["diverged_at"] = step
            trainer.stop(accept_nonfinite=True)
            continue
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # fp16 autocast: loss x scale, so small gradients stay above 6e-8
        before = scaler.get_scale() if use_scaler else 0.0
        scaler.step(optimizer)  # unscales; skips the step if any gradient is inf/NaN
        scaler.update()  # overflow: scale / 2; growth_interval clean steps: scale x 2
        schedule.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the step time below is the GPU's time, not the launch time
        step_time += time.perf_counter() - t0
        timed += 1
        done = step + 1
        record: dict[str, float] = {}
        if use_scaler:
            skipped += int(scaler.get_scale() < before)  # update() lowers the scale only after a skipped step
            if done % cfg.scale_log_every == 0:
                record["amp/loss_scale"] = scaler.get_scale()
        if done % cfg.eval_every == 0 or done == cfg.steps:
            record["train/loss"] = loss.item()
            record["eval/accuracy"] = accuracy(copy.deepcopy(model).float(), x_test, y_test, device)
            if half:
                record.update(fp16_underflow(model, x, y, cfg.probe_scale, schedule.get_last_lr()[0], device))
        if record:
            run.log(record, done)
        trainer.extra.update(skipped_steps=skipped, step_time=step_time, timed=timed)

    diverged_at = trainer.extra.get("diverged_at")
    final = accuracy(copy.deepcopy(model).float(), x_test, y_test, device) if diverged_at is None else 0.0
    result: dict[str, float | None] = {
        "accuracy": final, "diverged_at": diverged_at,
        "step_ms": 1000 * step_time / timed if timed else None,
        "saved_for_backward_mb": saved_for_backward_mb(model, x_train[:cfg.batch_size].to(device),
                                                       y_train[:cfg.batch_size].to(device), amp, half, device),
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }
    if use_scaler:
        result.update(skipped_steps=skipped, final_loss_scale=scaler.get_scale())
    if half:
        last = run.history("grad/underflow_unscaled")
        for key in ("grad/underflow_unscaled", "grad/underflow_scaled", "grad/lost_update"):
            values = [v for _, v in run.history(key)]
            result[key.split("/")[1] + "_mean"] = sum(values) / len(values) if values else None
        result["measurements"] = len(last)
    return run.finish(result)


# ---- what goes wrong in pure fp16 ----------------------------------------------------------------
def flat_grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.detach().float().flatten() for p in model.parameters()])


def fp16_underflow(model16: nn.Module, x: torch.Tensor, y: torch.Tensor, scale: float, lr: float,
                   device: torch.device) -> dict[str, float]:
    """Gradients of the fp16 model on one batch, against the same weights in fp32.

    underflow: share of the gradient values that are non-zero in fp32 but exactly zero in fp16, without
    and with a loss scale. lost_update: share of the non-zero fp32 updates (lr * grad) that leave an fp16
    weight unchanged because they are smaller than half its spacing.
    """
    ref = copy.deepcopy(model16).float()
    forward_loss(ref, x, y, "off", False, device).backward()
    g32 = flat_grads(ref)
    plain = copy.deepcopy(model16)
    forward_loss(plain, x, y, "off", True, device).backward()
    g16 = flat_grads(plain)
    scaled = copy.deepcopy(model16)
    (forward_loss(scaled, x, y, "off", True, device) * scale).backward()
    g16_scaled = flat_grads(scaled) / scale
    nonzero = g32 != 0
    n = max(int(nonzero.sum()), 1)
    w16 = torch.cat([p.detach().flatten() for p in model16.parameters()])
    update = lr * g32
    lost = ((w16.float() - update).half() == w16) & (update != 0)
    return {"grad/underflow_unscaled": ((g16 == 0) & nonzero).sum().item() / n,
            "grad/underflow_scaled": ((g16_scaled == 0) & nonzero).sum().item() / n,
            "grad/lost_update": lost.sum().item() / max(int((update != 0).sum()), 1)}


def saved_for_backward_mb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: str, half: bool,
                          device: torch.device) -> float:
    """Megabytes autograd keeps for the backward pass of one batch (activations and cast weights):
    the part of training memory that 16-bit compute halves. Counted exactly with saved-tensor hooks."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward_loss(model, x, y, amp, half, device)
    return total / 2**20


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    data = fashion_mnist.subsets(cfg.train_subset, cfg.eval_subset)
    results: dict[str, dict | None] = {}
    for name in VARIANTS:
        if name not in cfg.variants:
            continue
        reason = unsupported_reason(name, run.device, cfg.hidden)
        if reason:
            print(f"skipped: {reason}", flush=True)
            results[name] = None
            continue
        sub = run.variant(name)
        results[name] = sub.result or train_variant(cfg, sub, name, data)
    plot_overview(cfg, run)
    return summarise(results, run.device)


# ---- evaluation ----------------------------------------------------------------------------------
def summarise(results: dict[str, dict | None], device: torch.device) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    fp32 = results["fp32"]
    for name, r in results.items():
        metrics[f"{name}_accuracy"] = None if r is None else r["accuracy"]
    gaps = []
    for name in ("fp16_autocast", "bf16_autocast"):
        r = results.get(name)
        gap = None if r is None else abs(r["accuracy"] - fp32["accuracy"]) * 100
        metrics[f"{name}_gap_points"] = gap
        if gap is not None:
            gaps.append(gap)
    metrics["max_autocast_accuracy_gap_points"] = max(gaps) if gaps else None
    pure = results.get("fp16_pure")
    if pure is not None:
        metrics["fp16_pure_diverged"] = float(pure["diverged_at"] is not None)
        metrics["fp16_pure_grad_underflow_unscaled"] = pure.get("underflow_unscaled_mean")
        metrics["fp16_pure_grad_underflow_scaled"] = pure.get("underflow_scaled_mean")
        metrics["fp16_pure_lost_update_fraction"] = pure.get("lost_update_mean")
    auto = results.get("fp16_autocast")
    if auto is not None:
        metrics["fp16_autocast_skipped_steps"] = auto["skipped_steps"]
        metrics["fp16_autocast_final_loss_scale"] = auto["final_loss_scale"]
    speedups = []
    for name, r in results.items():
        if r is None:
            continue
        metrics[f"{name}_saved_for_backward_mb"] = r["saved_for_backward_mb"]
        # Timings and memory peaks vary between runs: under perf/ so resume/eval comparisons skip them.
        metrics[f"perf/{name}_step_ms"] = r["step_ms"]
        metrics[f"perf/{name}_peak_memory_mb"] = r["peak_memory_mb"]
        if name != "fp32" and r["step_ms"] and fp32["step_ms"]:
            metrics[f"perf/{name}_speedup"] = fp32["step_ms"] / r["step_ms"]
            if name.endswith("autocast"):
                speedups.append(metrics[f"perf/{name}_speedup"])
    metrics["perf/gpu_autocast_speedup"] = max(speedups) if speedups and device.type == "cuda" else None
    return metrics


def evaluate(cfg: Config, run: Run) -> dict[str, float | None]:
    """Each variant's test accuracy (fp32 evaluation of its trained weights), from its checkpoint."""
    _, _, x_test, y_test = fashion_mnist.subsets(cfg.train_subset, cfg.eval_subset)
    out: dict[str, float | None] = {}
    for name in VARIANTS:
        if name not in cfg.variants:
            continue
        result = run.variant(name).result
        if result is None:
            out[f"{name}_accuracy"] = None
            continue
        if result["diverged_at"] is not None:
            out[f"{name}_accuracy"] = 0.0
            continue
        model = make_mlp((28 * 28, cfg.hidden, cfg.hidden, 10)).to(run.device)
        if VARIANTS[name][1]:
            model = model.half()
        run.variant(name).load(model)
        out[f"{name}_accuracy"] = accuracy(model.float(), x_test, y_test, run.device)
    return out


# ---- which precisions this device runs -----------------------------------------------------------
def unsupported_reason(name: str, device: torch.device, hidden: int) -> str | None:
    """Try one tiny step in this precision; return why it cannot run here, or None."""
    amp, half, _ = VARIANTS[name]
    try:
        model = make_mlp((28 * 28, hidden, hidden, 10)).to(device)
        if half:
            model = model.half()
        forward_loss(model, torch.rand(2, 1, 28, 28, device=device), torch.tensor([0, 1], device=device), amp,
                     half, device).backward()
    except (RuntimeError, NotImplementedError) as e:
        return f"{name} is not supported on {device.type}: {str(e).splitlines()[0][:120]}"
    return None


# ---- plots ---------------------------------------------------------------------------------------
def plot_overview(cfg: Config, run: Run) -> None:
    if not run.is_main:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name in VARIANTS:
        curve = run.variant(name).history("eval/accuracy") if name in cfg.variants else []
        if curve:
            axes[0].plot(*zip(*curve), label=name)
    axes[0].set(xlabel="step", ylabel="test accuracy", title="accuracy by precision")
    axes[0].legend()
    scale = run.variant("fp16_autocast").history("amp/loss_scale") if "fp16_autocast" in cfg.variants else []
    if scale:
        axes[1].step(*zip(*scale), where="post")
    axes[1].set(xlabel="step", ylabel="loss scale", yscale="log", title="GradScaler loss scale (fp16 autocast)")
    if "fp16_pure" in cfg.variants:
        pure = run.variant("fp16_pure")
        for key, label in (("grad/underflow_unscaled", "gradients = 0 in fp16, no scaling"),
                           ("grad/underflow_scaled", f"gradients = 0 in fp16, loss x {cfg.probe_scale:g}"),
                           ("grad/lost_update", "updates lost in fp16 weights")):
            curve = pure.history(key)
            if curve:
                axes[2].plot(*zip(*curve), label=label, marker=".")
    axes[2].set(xlabel="step", ylabel="fraction of non-zero fp32 values", title="pure fp16: what is lost")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run.plot_path("overview"), dpi=90)
    plt.close(fig)

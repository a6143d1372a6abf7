"""Distributed training: DistributedDataParallel under torchrun, and model parallelism beside it.

Seed Q69 says DistributedDataParallel offers both data and model parallelism. It offers one: data
parallelism. Every process holds a full copy of the model, sees its own shard of each batch, and DDP
averages the gradients across processes during backward, so every copy takes the same step. Model
parallelism (splitting the *layers* across devices) is a different mechanism: `nn/pipeline.py`.
The recipe trains an MLP on Fashion-MNIST with a global batch split over the ranks, then checks that
(1) W processes with batch B/W each end with the parameters of one process with batch B, and (2) the
two-stage pipeline matches the unsplit model's outputs and gradients. Launching: docs/ddp.md.

    torchrun --nproc-per-node 2 -m torch_cookbook run ddp --threads 1    # two processes, gloo on CPU
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import time
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from torch_cookbook.data import fashion_mnist
from torch_cookbook.engine import distributed as dist
from torch_cookbook.engine.config import BaseConfig, Target, param
from torch_cookbook.engine.loop import autocast, cosine_decay, grad_scaler, predict_batches
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import ConfigError
from torch_cookbook.nn.mlp import make_mlp
from torch_cookbook.nn.pipeline import TwoDevicePipeline, pipeline_step_p2p, split_stages

seed_question = "Q69 Distributed training"
summary = ("DDP under torchrun (gloo on CPU, nccl on GPUs): W ranks x batch B/W = 1 process x batch B, "
           "plus a two-stage model-parallel pipeline checked against the unsplit model.")


@dataclass
class Config(BaseConfig):
    steps: int = param(1500, "optimizer steps", low=1)
    batch_size: int = param(128, "global batch per optimizer step, split evenly over ranks and accumulation",
                            low=1)
    accum_steps: int = param(1, "gradient accumulation: micro-batches per optimizer step (no_sync on all "
                             "but the last)", low=1)
    lr: float = param(0.05, "peak SGD learning rate (cosine decay to 0 over the steps)", low=0, low_open=True)
    momentum: float = param(0.9, "SGD momentum", low=0, high=1, high_open=True)
    hidden: int = param(256, "width of the MLP's two hidden layers", low=1)
    eval_every: int = param(100, "evaluate (and checkpoint) every N steps", low=1)
    train_subset: int = param(0, "use the first N training images (0 = all 60,000)", low=0)
    eval_subset: int = param(0, "evaluate on the first N test images (0 = all 10,000)", low=0)
    backend: str = param("auto", "process-group backend under torchrun: auto = nccl on CUDA, gloo otherwise",
                         choices=dist.BACKENDS)
    check_processes: int = param(2, "ranks for the equivalence/pipeline checks when this run is a single "
                                 "process: spawned on loopback with gloo (0 = skip the checks)", choices=(0, 2))
    check_steps: int = param(20, "optimizer steps compared in the DDP vs one-process check", low=1)
    check_examples: int = param(1024, "training images used by the checks", low=2)
    pipeline_chunks: int = param(4, "micro-batches per batch in the model-parallel pipeline", low=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size % self.accum_steps:
            raise ConfigError(f"--batch_size {self.batch_size}: not divisible by --accum_steps "
                                   f"{self.accum_steps}")


profiles = {
    "smoke": {"steps": 40, "eval_every": 20, "train_subset": 4096, "eval_subset": 1000, "hidden": 64,
              "check_steps": 5, "check_examples": 256, "check_processes": 0},
    "quick": {"steps": 400, "eval_every": 50, "eval_subset": 2000},
    "full": {},
}

targets = [
    Target("test_accuracy", ">=", 0.87),
    Target("equivalence_max_abs_diff", "<=", 1e-5),  # W ranks x B/W vs 1 process x B, parameters after N steps
    Target("pipeline_p2p_max_abs_diff", "<=", 1e-5),  # 2-process pipeline vs the unsplit model
]


# The model: make_mlp((784, hidden, hidden, 10)) = Flatten, Linear, ReLU, Linear, ReLU, Linear. No BatchNorm:
# per-rank batch statistics would break the equivalence (under DDP a BN model needs
# engine.distributed.convert_sync_batchnorm to see the global batch; torch's own runs on CUDA only).
SPLIT_AT = 3  # the pipeline's stage 0 = Flatten, Linear, ReLU; stage 1 = Linear, ReLU, Linear


# ---- one optimizer step in data parallel: accumulation and DDP's all-reduce ----------------------
def optimizer_step(ddp_model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   x: torch.Tensor, y: torch.Tensor, accum: int, device: torch.device, amp: str) -> torch.Tensor:
    """This rank's share (x, y) of the global batch, in `accum` micro-batches, then one update.

    The loss is divided by `accum` so the accumulated gradient is the mean over the rank's share; DDP
    then averages over ranks, which gives the mean over the global batch. `no_sync()` skips the
    all-reduce for all but the last micro-batch: gradients pile up locally and are synchronised once.
    """
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=device)
    for i, (xm, ym) in enumerate(zip(x.chunk(accum), y.chunk(accum))):
        is_ddp = isinstance(ddp_model, nn.parallel.DistributedDataParallel)
        sync = ddp_model.no_sync() if is_ddp and i < accum - 1 else contextlib.nullcontext()
        with sync:
            with autocast(device, amp):
                loss = nn.functional.cross_entropy(ddp_model(xm), ym) / accum
            scaler.scale(loss).backward()  # DDP's gradient all-reduce runs inside this backward
        total += loss.detach()
    scaler.step(optimizer)
    scaler.update()
    return total


# ---- training: the optimizer step under the loop scaffold ----------------------------------------
def train(cfg: Config, run: Run, data: tuple) -> dict[str, float]:
    x_train, y_train, x_test, y_test = data
    world = dist.world_size()
    dist.check_divisible(cfg.batch_size, world * cfg.accum_steps, "--batch_size")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = make_mlp((28 * 28, cfg.hidden, cfg.hidden, 10)).to(run.device)
    ddp_model = dist.wrap_ddp(model, run.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(cfg.steps))
    scaler = grad_scaler(run.device, cfg.amp)
    # Checkpoints hold the plain module (no `module.` prefix): rank 0 writes them, every rank reads them.
    trainer = Trainer(run, cfg.steps, every=cfg.eval_every, description=f"ddp x{world}", model=model,
                      optimizer=optimizer, scheduler=schedule, scaler=scaler)
    kill_rank, kill_step = _fault_injection()

    model.train()
    train_time, timed_steps = 0.0, 0
    shards = dist.sharded_minibatches(len(x_train), cfg.batch_size, cfg.seed, start_step=trainer.start)
    for step, (_, _, idx) in trainer.steps(shards):
        if step == kill_step and dist.rank() == kill_rank:
            os.kill(os.getpid(), signal.SIGKILL)  # the elastic demo: lose a worker mid-training
        t0 = time.perf_counter()
        x, y = local_batch(x_train, y_train, idx, run.device)  # this rank's B/W examples of the global batch
        loss = optimizer_step(ddp_model, optimizer, scaler, x, y, cfg.accum_steps, run.device, cfg.amp)
        schedule.step()
        train_time += time.perf_counter() - t0
        timed_steps += 1
        trainer.record(loss)
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            logged = dist.all_reduce_mean({"train/loss": loss.item()})  # the global batch's loss
            logged["eval/accuracy"] = sharded_accuracy(model, x_test, y_test, run.device)
            run.log(logged, done)

    final = sharded_accuracy(model, x_test, y_test, run.device)
    steps_per_s = timed_steps / train_time if train_time > 0 else None
    return {"test_accuracy": final, "world_size": world, "per_rank_batch": cfg.batch_size // world,
            "train_steps_per_s": steps_per_s,
            "train_samples_per_s": None if steps_per_s is None else steps_per_s * cfg.batch_size}


# ---- the checks: data-parallel equivalence and model-parallel pipeline ---------------------------
def params_after(cfg: Config, x: torch.Tensor, y: torch.Tensor, data_parallel: bool) -> torch.Tensor:
    """Train a fresh model for `check_steps` steps; return its parameters as one flat vector.

    data_parallel=True: every rank of the current group takes part (DDP, batch B/W each).
    data_parallel=False: this process alone, batch B: the reference.
    """
    device = torch.device("cpu")
    size, rank_ = (dist.world_size(), dist.rank()) if data_parallel else (1, 0)
    torch.manual_seed(cfg.seed)
    model = make_mlp((28 * 28, cfg.hidden, cfg.hidden, 10))
    ddp_model = dist.wrap_ddp(model, device) if data_parallel else model
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    scaler = grad_scaler(device, "off")
    batches = dist.sharded_minibatches(len(x), cfg.batch_size, cfg.seed, rank_=rank_, size=size)
    for step, _epoch, idx in batches:
        if step >= cfg.check_steps:
            break
        optimizer_step(ddp_model, optimizer, scaler, x[idx], y[idx], cfg.accum_steps, device, "off")
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def pipeline_p2p_diff(cfg: Config, x: torch.Tensor, y: torch.Tensor) -> float:
    """Ranks 0 and 1 run the two stages with send/recv; the largest difference to the unsplit model
    (outputs, loss, every gradient), reduced over ranks with MAX."""
    torch.manual_seed(cfg.seed)
    model = make_mlp((28 * 28, cfg.hidden, cfg.hidden, 10))
    reference = copy.deepcopy(model)
    xb, yb = x[:cfg.batch_size], y[:cfg.batch_size]
    ref_out = reference(xb)
    ref_loss = nn.functional.cross_entropy(ref_out, yb)
    ref_loss.backward()

    stage0, stage1 = split_stages(model, SPLIT_AT)
    me = dist.rank()
    stage = stage0 if me == 0 else stage1
    loss, out = pipeline_step_p2p(stage, xb if me == 0 else None, yb, chunks=cfg.pipeline_chunks)
    diff = 0.0
    if me in (0, 1):
        mine = range(SPLIT_AT) if me == 0 else range(SPLIT_AT, len(model))
        for i in mine:
            for p, q in zip(model[i].parameters(), reference[i].parameters()):
                diff = max(diff, (p.grad - q.grad).abs().max().item())
    if me == 1:
        diff = max(diff, (out - ref_out.detach()).abs().max().item(), abs(loss - ref_loss.item()))
    t = torch.tensor([diff], dtype=torch.float64)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t.item()


def group_checks(cfg: Config, x: torch.Tensor, y: torch.Tensor) -> dict:
    """What every rank of a process group runs for the checks (spawned on loopback, or under torchrun)."""
    return {"params": params_after(cfg, x, y, data_parallel=True),
            "pipeline_p2p_max_abs_diff": pipeline_p2p_diff(cfg, x, y) if dist.world_size() >= 2 else None,
            "world_size": dist.world_size()}


def run_checks(cfg: Config, run: Run, x: torch.Tensor, y: torch.Tensor) -> dict[str, float | None]:
    x, y = x[:cfg.check_examples], y[:cfg.check_examples]
    size = dist.world_size() if dist.is_distributed() else cfg.check_processes
    dist.check_divisible(cfg.batch_size, max(1, size) * cfg.accum_steps, "--batch_size")
    if dist.is_distributed():
        results = group_checks(cfg, x, y)  # the live torchrun group
    elif cfg.check_processes:
        results = dist.spawn_gloo(group_checks, cfg.check_processes, args=(cfg, x, y))[0]
    else:
        results = None
    metrics: dict[str, float | None] = {"equivalence_max_abs_diff": None, "pipeline_p2p_max_abs_diff": None,
                                        "check_world_size": None}
    if results is not None:
        reference = params_after(cfg, x, y, data_parallel=False)
        metrics["equivalence_max_abs_diff"] = (results["params"] - reference).abs().max().item()
        metrics["pipeline_p2p_max_abs_diff"] = results["pipeline_p2p_max_abs_diff"]
        metrics["check_world_size"] = results["world_size"]

    # The same split in one process, over two devices (two GPUs when present, else CPU twice).
    devices = ("cuda:0", "cuda:1") if torch.cuda.device_count() >= 2 else ("cpu", "cpu")
    torch.manual_seed(cfg.seed)
    model = make_mlp((28 * 28, cfg.hidden, cfg.hidden, 10))
    reference = copy.deepcopy(model)
    xb, yb = x[:cfg.batch_size], y[:cfg.batch_size]
    nn.functional.cross_entropy(reference(xb), yb).backward()
    pipe = TwoDevicePipeline(*split_stages(model, SPLIT_AT), devices=devices, chunks=cfg.pipeline_chunks)
    nn.functional.cross_entropy(pipe(xb), yb.to(devices[1])).backward()
    diff = max((p.grad.cpu() - q.grad).abs().max().item() for p, q in zip(model.parameters(), reference.parameters()))
    metrics["pipeline_devices_max_abs_diff"] = diff
    return metrics


# ---- the recipe ----------------------------------------------------------------------------------
def check_launch(cfg: Config) -> None:
    """Called by the CLI before the process group is joined and the run directory created (torchrun's environment
    gives the world size)."""
    world = dist.world_size()
    parts = "the world size" if cfg.accum_steps == 1 else f"world size x accum_steps = {world} x {cfg.accum_steps} ="
    dist.check_divisible(cfg.batch_size, world * cfg.accum_steps, "--batch_size", parts)


def run(cfg: Config, run: Run) -> dict[str, float | None]:
    check_launch(cfg)
    data = fashion_mnist.subsets(cfg.train_subset, cfg.eval_subset)
    metrics = train(cfg, run, data)
    metrics.update(run_checks(cfg, run, data[0], data[1]))
    plot_curves(cfg, run)
    return metrics


# ---- evaluation ----------------------------------------------------------------------------------
@torch.inference_mode()
def sharded_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """Each rank scores its slice of the test set; the correct counts are summed over ranks."""
    part = dist.shard_range(len(x))
    logits = predict_batches(model, x[part], device)
    counts = torch.tensor([(logits.argmax(1) == y[part]).sum().item(), len(y[part])], dtype=torch.float64)
    counts = dist.all_reduce_sum(counts)
    return (counts[0] / counts[1]).item()


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Test accuracy recomputed from the saved checkpoint (one process, the whole test set)."""
    _, _, x_test, y_test = fashion_mnist.subsets(cfg.train_subset, cfg.eval_subset)
    model = make_mlp((28 * 28, cfg.hidden, cfg.hidden, 10)).to(run.device)
    run.load(model)
    return {"test_accuracy": sharded_accuracy(model, x_test, y_test, run.device)}


# ---- this rank's batch and the elastic demo's lost worker ----------------------------------------
def local_batch(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, device: torch.device,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    return x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)


def _fault_injection() -> tuple[int, int]:
    """COOKBOOK_DDP_KILL=RANK:STEP SIGKILLs that rank at that step, on torchrun's first attempt only."""
    spec = os.environ.get("COOKBOOK_DDP_KILL", "")
    if not spec or dist.restart_count() > 0:
        return -1, -1
    rank_, step = spec.split(":")
    return int(rank_), int(step)


# ---- plots ---------------------------------------------------------------------------------------
def plot_curves(cfg: Config, run: Run) -> None:
    if not run.is_main:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    loss, acc = run.history("train/loss"), run.history("eval/accuracy")
    if loss:
        ax1.plot(*zip(*loss))
    if acc:
        ax2.plot(*zip(*acc))
    ax1.set(xlabel="step", ylabel="train loss (mean over ranks)", title="training loss")
    ax2.set(xlabel="step", ylabel="test accuracy", title=f"{dist.world_size()} process(es), global batch "
                                                           f"{cfg.batch_size}")
    fig.tight_layout()
    fig.savefig(run.plot_path("learning_curves"), dpi=100)
    plt.close(fig)

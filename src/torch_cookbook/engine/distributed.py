"""The seam for torch.distributed: joining the group torchrun describes, sharding data, reducing metrics.

`torchrun --nproc-per-node 2 -m torch_cookbook run ddp` starts two processes and tells each who it is
through environment variables (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Everything here
reads those, so the same code runs as one plain process (WORLD_SIZE unset: every helper is a no-op) or
as one rank of many:

    init_from_env(device, backend)     join the process group (gloo on CPU, nccl on CUDA)
    sharded_minibatches(...)           this rank's part of each global batch, via DistributedSampler
    shard_batches(...)                 this rank's part of each global batch of a one-process order
    all_reduce_mean / all_reduce_sum   metrics that mean the same thing on every rank
    convert_sync_batchnorm(model)      BatchNorm over the global batch (torch's on CUDA, `CpuSyncBatchNorm` on CPU)
    is_main_process()                  rank 0 writes logs, checkpoints and plots
    destroy()                          leave the group so no process lingers
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.rendezvous import rendezvous
from torch.utils.data.distributed import DistributedSampler

from torch_cookbook.engine import loop
from torch_cookbook.errors import ConfigError

BACKENDS = ("auto", "gloo", "nccl")
# How long a rank waits for the others (rendezvous and every collective). A lost peer must end in an
# error, not a hang; torchrun also stops the surviving workers when one exits with an error.
DEFAULT_TIMEOUT_S = 300.0


# ---- who am I ------------------------------------------------------------------------------------
def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """The index of this process on its own machine: the GPU it drives."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 writes logs, checkpoints and plots; other ranks only compute."""
    return rank() == 0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (torchrun, Slurm via srun + env)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


# ---- joining and leaving -------------------------------------------------------------------------
def resolve_backend(backend: str, device: torch.device) -> str:
    """auto = nccl for CUDA devices, gloo otherwise. nccl without GPUs is a one-line error."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend}: not one of the allowed values ({', '.join(BACKENDS)})")
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and (device.type != "cuda" or not torch.cuda.is_available()
                              or not dist.is_nccl_available()):
        why = "no CUDA GPU is available here" if not torch.cuda.is_available() else f"the device is {device.type}"
        raise ConfigError(f"--backend nccl: NCCL needs CUDA GPUs and {why}; use --backend gloo (or auto)")
    return backend


def init_from_env(device: torch.device, backend: str = "auto", timeout_s: float | None = None) -> bool:
    """Join the process group described by torchrun's environment. Returns False for a single process.

    Errors a user can cause (no rendezvous endpoint, nccl without GPUs, an endpoint nobody answers on)
    become a `ConfigError` with one line; the caller prints it on rank 0 only.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return False
    if is_distributed():
        return True
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise ConfigError(f"WORLD_SIZE={size} but {', '.join(missing)} not set: no rendezvous endpoint; launch "
                          "with torchrun --nproc-per-node N (one machine) or --rdzv-endpoint HOST:PORT (several)")
    chosen = resolve_backend(backend, device)
    if chosen == "nccl":
        torch.cuda.set_device(local_rank())  # before init, so NCCL binds this rank to its own GPU
    timeout = timeout_s or float(os.environ.get("COOKBOOK_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    endpoint = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        # The env:// store (the torchrun agent's, or one hosted by rank 0), with a prefix per restart: the
        # agent keeps its store across `--max-restarts` attempts, and without the prefix a restarted rank
        # would read the dead ranks' gloo addresses from the first attempt and fail to connect.
        store, rank_, size_ = next(rendezvous("env://", timeout=timedelta(seconds=timeout)))
        store = dist.PrefixStore(f"cookbook/attempt-{restart_count()}", store)
        dist.init_process_group(chosen, store=store, rank=rank_, world_size=size_, timeout=timedelta(seconds=timeout))
    except (RuntimeError, ValueError, OSError) as e:  # DistNetworkError/DistStoreError are RuntimeErrors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ConfigError(f"could not join the process group at {endpoint} "
                          f"(rank {os.environ['RANK']} of {size}, {chosen}, timeout {timeout:g} s): {first}") from None
    return True


def destroy() -> None:
    """Leave the process group (safe to call when there is none)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank `src`'s `obj` on every rank (a run directory name, a decision)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# ---- the model -----------------------------------------------------------------------------------
def wrap_ddp(model: nn.Module, device: torch.device, split_rng: bool = False) -> nn.Module:
    """DistributedDataParallel when in a process group, the model itself otherwise.

    DDP broadcasts rank 0's parameters at construction, then all-reduces (averages) gradients during
    backward, bucket by bucket, overlapping communication with the rest of the backward pass.
    `split_rng`: also `split_rng_per_rank()`, after the model was seeded and a resume restored the stream.
    """
    if not is_distributed():
        return model
    if split_rng:
        split_rng_per_rank()
    ids = [device.index if device.index is not None else local_rank()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def split_rng_per_rank() -> None:
    """Turn the torch random stream the ranks share into one per rank (nothing in one process).

    A recipe that seeds its model with the run's seed leaves every rank on the same stream (the launcher's
    seed + rank is gone), and the ranks would then draw the same dropout masks for different examples. Each
    rank reseeds from one draw of the shared stream plus its rank: a function of the shared state, so a
    resumed run splits the restored stream the same way on every attempt.
    """
    if is_distributed():
        torch.manual_seed(int(torch.randint(0, 2**62, ())) + rank())


# ---- data ----------------------------------------------------------------------------------------
def check_divisible(batch_size: int, size: int | None = None, flag: str = "--batch_size",
                    parts: str = "the world size") -> int:
    """The per-rank batch; the global batch must split evenly, or ranks would average unequal batches."""
    size = size or world_size()
    if batch_size % size:
        raise ConfigError(f"{flag} {batch_size}: not divisible by {parts} {size}; "
                          f"use a multiple of {size} (for example {max(size, batch_size // size * size)})")
    return batch_size // size


def check_batches(**global_batches: int) -> None:
    """`check_divisible` for each global batch a recipe takes, named by its flag: check_batches(batch_size=64)."""
    for name, batch_size in global_batches.items():
        check_divisible(batch_size, flag=f"--{name}")


def epoch_indices(n: int, seed: int, epoch: int, rank_: int | None = None, size: int | None = None) -> torch.Tensor:
    """This rank's example indices for `epoch`, from a DistributedSampler after `set_epoch(epoch)`.

    Forgetting `set_epoch` is the classic bug: every epoch would then see the same order. The sampler
    shuffles with a generator seeded by seed + epoch, identically on every rank, and gives rank r the
    positions r, r + W, r + 2W, ... of that permutation (drop_last keeps the shards equal).
    """
    sampler = DistributedSampler(range(n), num_replicas=size or world_size(),
                                 rank=rank() if rank_ is None else rank_, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)


def sharded_minibatches(n: int, batch_size: int, seed: int, start_step: int = 0, rank_: int | None = None,
                        size: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Endless (step, epoch, this rank's indices) for a *global* batch of `batch_size`, from `start_step`.

    Rank r's k-th batch holds positions r, r+W, ... of the global batch k of a single process with the
    same seed, so W processes with batch B/W see exactly the examples one process sees with batch B.
    The order depends only on (seed, step): a resumed run continues with the same batches.
    """
    size = size or world_size()
    local = check_divisible(batch_size, size)
    per_epoch = (n // size) // local
    if per_epoch == 0:
        raise ConfigError(f"--batch_size {batch_size} is larger than the {n} training examples")
    step = start_step
    while True:
        epoch, offset = divmod(step, per_epoch)
        order = epoch_indices(n, seed, epoch, rank_, size)
        for i in range(offset, per_epoch):
            yield step, epoch, order[i * local:(i + 1) * local]
            step += 1


def shard_batches(n: int, batch_size: int, seed: int, start_step: int = 0, rank_: int | None = None,
                  size: int | None = None) -> Iterator[torch.Tensor]:
    """This rank's positions r, r+W, r+2W, ... of each global batch of `engine.loop.batches(n, batch_size, ...)`.

    For a recipe whose one-process order must stay exactly as it is (`sharded_minibatches` draws another order,
    DistributedSampler's): W processes together see each global batch one process sees, and one process gets
    `engine.loop.batches` itself. The global batch must split evenly, or ranks would average unequal shares.
    """
    r, w = (rank() if rank_ is None else rank_), (size or world_size())
    check_divisible(batch_size, w)
    for idx in loop.batches(n, batch_size, seed, start_step):
        yield idx[r::w] if w > 1 else idx


def shard_range(n: int, rank_: int | None = None, size: int | None = None) -> slice:
    """A contiguous slice of `n` items for this rank (for evaluation: each rank scores its part)."""
    r, w = (rank() if rank_ is None else rank_), (size or world_size())
    per = -(-n // w)
    return slice(min(n, r * per), min(n, (r + 1) * per))


# ---- metrics -------------------------------------------------------------------------------------
def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over ranks (a copy; `t` itself is untouched). Identity for one process."""
    if not is_distributed():
        return t.clone()
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """The mean over ranks of each value, so the logged loss is the global batch's, not rank 0's."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= world_size()
    return {k: t[i].item() for i, k in enumerate(keys)}


# ---- BatchNorm over the global batch ------------------------------------------------------------------
class SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) that backward passes through: the gradient of a sum over ranks is the sum over ranks of
    each rank's gradient. (torch.distributed.nn.functional.all_reduce does the same and is deprecated.)"""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        out = t.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return SumOverRanks.apply(grad)


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on any device and backend (gloo).

    torch's nn.SyncBatchNorm runs on CUDA only. In training, one all-reduce adds up each channel's sum and the
    count over the ranks (the global mean), a second adds up each channel's squared deviations from that mean
    (the global biased variance), and every rank normalises with both: W ranks with B/W examples each compute
    what BatchNorm computes on the B together. (Summing x and x² in one all-reduce would save a message, but
    E[x²] - mean² cancels in float32 when a channel's mean is much larger than its spread.) The all-reduces are
    differentiable (`SumOverRanks`), so backward sends each rank's share of the gradient of the statistics to
    the others. Running statistics are updated as BatchNorm updates them (with the unbiased variance). In eval
    mode, or in one process, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and is_distributed() and world_size() > 1):
            return super().forward(x)
        dtype = x.dtype
        x = x.to(torch.promote_types(dtype, torch.float32))  # half-precision input (autocast): statistics in float32
        dims, shape = [0, *range(2, x.dim())], (1, x.size(1)) + (1,) * (x.dim() - 2)  # every axis but the channels
        count = torch.full((1,), x.numel() / x.size(1), dtype=x.dtype, device=x.device)
        totals = SumOverRanks.apply(torch.cat([x.sum(dims), count]))
        n = totals[-1]
        centred = x - (totals[:-1] / n).view(shape)
        var = SumOverRanks.apply((centred * centred).sum(dims)) / n
        if self.track_running_stats:
            self._update_running_stats(totals[:-1].detach() / n, var.detach() * n / (n - 1).clamp(min=1))
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        return (out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out).to(dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum  # None: average
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm layer of `module` synchronised over the process group: torch's nn.SyncBatchNorm for a
    layer on CUDA, `CpuSyncBatchNorm` otherwise. The new layers take over the old ones' parameters and buffers
    (the same tensors, so an optimizer built before still holds them). Returns the converted module."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        state = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if any(t.device.type == "cuda" for t in state):
            return nn.SyncBatchNorm.convert_sync_batchnorm(module)
        converted = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                     module.track_running_stats)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module


# ---- elastic restarts ----------------------------------------------------------------------------
ELASTIC_FILE = "elastic.json"


def restart_count() -> int:
    """How many times torchrun restarted the worker group (`--max-restarts`); 0 on the first attempt."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def elastic_marker() -> dict[str, str]:
    """What identifies one torchrun job across its restarts: its rendezvous id (`--rdzv-id`) and size.
    (Not the port: c10d rendezvous may pick a new MASTER_PORT for every restart.)"""
    return {"run_id": os.environ.get("TORCHELASTIC_RUN_ID", "none"), "world_size": os.environ.get("WORLD_SIZE", "1")}


def previous_attempt(recipe_root: Path, config: dict) -> Path | None:
    """After a torchrun restart: the unfinished run directory of the earlier attempt of this job, if any.

    torchrun restarts every worker with the same command line, so without this a restarted group would
    start a fresh run directory from step 0. It continues the newest run of the same job (same marker,
    same config) that has no summary.json yet.
    """
    if restart_count() == 0 or not recipe_root.is_dir():
        return None
    marker = elastic_marker()
    for candidate in sorted(recipe_root.iterdir(), reverse=True):
        try:
            if (candidate / "summary.json").exists():
                continue
            saved = json.loads((candidate / ELASTIC_FILE).read_text())
            saved_config = json.loads((candidate / "config.json").read_text())["config"]
        except (OSError, ValueError, KeyError):
            continue
        if saved == marker and saved_config == config:
            return candidate
    return None


def write_elastic_marker(run_dir: Path) -> None:
    if launched_by_torchrun() and is_main_process():
        (Path(run_dir) / ELASTIC_FILE).write_text(json.dumps(elastic_marker()) + "\n")


# ---- a throwaway process group on this machine (tests, and checks inside a 1-process run) ----------
def loopback_env() -> dict[str, str]:
    """Keep gloo's connections on the loopback interface, so a local group never touches the network."""
    return {"GLOO_SOCKET_IFNAME": "lo"} if Path("/sys/class/net/lo").exists() else {}


def spawn_gloo(fn: Callable[..., Any], nprocs: int, args: tuple = (), timeout_s: float = 600.0) -> list[Any]:
    """Run `fn(*args)` in `nprocs` fresh processes joined in a gloo group on this machine; return each rank's
    result (plain values and tensors). The group meets through a file store (no port to pick) and gloo
    talks over loopback. A child that fails fails the call; one that hangs is killed after `timeout_s`.
    """
    import tempfile
    import time

    import torch.multiprocessing as mp

    os.environ.update(loopback_env())  # inherited by the children
    with tempfile.TemporaryDirectory(prefix="cookbook-gloo-") as tmp:
        ctx = mp.start_processes(_spawned_entry, args=(fn, nprocs, tmp, timeout_s, args), nprocs=nprocs,
                                 join=False, start_method="spawn")
        deadline = time.monotonic() + timeout_s
        try:
            while not ctx.join(timeout=1.0):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {nprocs}-process gloo group did not finish within {timeout_s:g} s")
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
                p.join()
        return [torch.load(Path(tmp) / f"result-{r}.pt", weights_only=True) for r in range(nprocs)]


def _spawned_entry(index: int, fn: Callable[..., Any], nprocs: int, tmp: str, timeout_s: float, args: tuple) -> None:
    torch.set_num_threads(1)  # the ranks share this machine's cores
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=index, world_size=nprocs,
                            timeout=timedelta(seconds=timeout_s))
    try:
        result = fn(*args)
        torch.save(result, Path(tmp) / f"result-{index}.pt")
    finally:
        dist.destroy_process_group()

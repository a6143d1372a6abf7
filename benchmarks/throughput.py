"""Achieved training FLOP/s of the project's MLP and CNN classifiers, against this machine's matmul ceiling.

    python benchmarks/throughput.py [--threads 2] [--steps 50] [--out benchmarks/results/throughput.json]

For each model (the optimizers recipe's MLP, the amp recipe's MLP, the batchnorm recipe's CNN with and
without BatchNorm) and batch size, it counts the FLOPs of one training step (forward, backward) with
`torch.utils.flop_counter.FlopCounterMode`, times `--steps` real training steps (Adam, data already in
memory, as the recipes train), and reports achieved GFLOP/s as a fraction of the fp32 matmul ceiling
measured in the same process. It also times the variants that issue 9 asks about: `channels_last` for the
CNN, `torch.compile`, and Adam's `foreach` vs `fused` implementations.

Run it on an otherwise idle machine: timings taken beside other work are meaningless.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from torch_cookbook.bench import machine
from torch_cookbook.recipes.amp import make_mlp as amp_mlp
from torch_cookbook.recipes.batchnorm import make_cnn
from torch_cookbook.recipes.optimizers import make_mlp as optimizers_mlp

MODELS: dict[str, Callable[[], nn.Module]] = {
    "optimizers MLP 784-256-10": lambda: optimizers_mlp(256),
    "amp MLP 784-128-128-10": lambda: amp_mlp(128),
    "batchnorm CNN (width 16), no BN": lambda: make_cnn(False, 16),
    "batchnorm CNN (width 16), BN": lambda: make_cnn(True, 16),
}


def matmul_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - start) / 1e9


def images(model_name: str, batch: int, channels_last: bool) -> torch.Tensor:
    x = torch.randn(batch, 1, 28, 28)
    if "optimizers" in model_name:
        x = x.flatten(1)  # that recipe feeds flattened images
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, adam: str) -> float:
    """Seconds per training step, after warm-up (compilation included in warm-up)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **{adam: True})

    def one_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(5):
        one_step()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    return (time.perf_counter() - start) / steps


def measure(name: str, batch: int, steps: int, variant: str, ceiling: float) -> dict:
    torch.manual_seed(0)
    model = MODELS[name]()
    channels_last = variant == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x, y = images(name, batch, channels_last), torch.randint(0, 10, (batch,))
    flops = step_flops(model, x, y)
    runnable = torch.compile(model) if variant == "compile" else model
    seconds = time_steps(runnable, x, y, steps, "fused" if variant == "fused_adam" else "foreach")
    achieved = flops / seconds / 1e9
    return {"model": name, "batch": batch, "variant": variant, "mflop_per_step": round(flops / 1e6, 2),
            "ms_per_step": round(seconds * 1e3, 3), "samples_per_s": round(batch / seconds),
            "gflops": round(achieved, 2), "fraction_of_ceiling": round(achieved / ceiling, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--variants", nargs="+", default=["eager", "fused_adam", "channels_last", "compile"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ceiling = matmul_gflops()
    print(f"fp32 matmul ceiling (1024x1024, {args.threads} threads): {ceiling:.1f} GFLOP/s", flush=True)
    rows = []
    print("| model | batch | variant | MFLOP/step | ms/step | samples/s | GFLOP/s | of ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    for name in MODELS:
        for batch in args.batches:
            for variant in args.variants:
                if variant == "channels_last" and "CNN" not in name:
                    continue
                try:
                    row = measure(name, batch, args.steps, variant, ceiling)
                except Exception as e:  # noqa: BLE001 - a variant that cannot run here is a result, not a crash
                    row = {"model": name, "batch": batch, "variant": variant, "error": f"{type(e).__name__}: {e}"[:200]}
                    print(f"| {name} | {batch} | {variant} | failed: {row['error']} |", flush=True)
                    rows.append(row)
                    continue
                rows.append(row)
                print(f"| {name} | {batch} | {variant} | {row['mflop_per_step']:.1f} | {row['ms_per_step']:.2f} | "
                      f"{row['samples_per_s']} | {row['gflops']:.1f} | {row['fraction_of_ceiling']:.0%} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"threads": args.threads, "ceiling_gflops": round(ceiling, 1),
                                        "machine": machine(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

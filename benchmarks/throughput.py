"""Achieved training FLOP/s of the project's MLP and CNN classifiers, against this machine's matmul ceiling.

    python benchmarks/throughput.py [--threads 2] [--steps 50] [--out benchmarks/results/throughput.json]
    python benchmarks/throughput.py --device cuda --batches 128 1024 \
        --variants eager bf16 fp16 compile compile_bf16 --out gpu_throughput.json     # on a GPU

For each model (the optimizers recipe's MLP, the amp recipe's MLP, the batchnorm recipe's CNN with and
without BatchNorm) and batch size, it counts the FLOPs of one training step (forward, backward) with
`torch.utils.flop_counter.FlopCounterMode`, times `--steps` real training steps (Adam, data already in
memory, as the recipes train), and reports achieved GFLOP/s as a fraction of the fp32 matmul ceiling
measured in the same process. It also times the variants that issue 9 asks about: `channels_last` for the
CNN, `torch.compile`, and Adam's `foreach` vs `fused` implementations. On a CUDA device it also times the step under
`torch.autocast` in bf16 and in fp16 (with a GradScaler, as the amp recipe trains), and the ceiling is measured
for fp32 and bf16 matmuls on that device; timings synchronize the device before reading the clock.

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
from torch_cookbook.nn.mlp import make_mlp
from torch_cookbook.recipes.batchnorm import make_cnn

MODELS: dict[str, Callable[[], nn.Module]] = {
    "optimizers MLP 784-256-10": lambda: make_mlp((784, 256, 10), flatten=False),
    "amp MLP 784-128-128-10": lambda: make_mlp((784, 128, 128, 10)),
    "amp MLP 784-4096-4096-10": lambda: make_mlp((784, 4096, 4096, 10)),  # amp --hidden 4096: matmul-bound on a GPU
    "batchnorm CNN (width 16), no BN": lambda: make_cnn(False, 16),
    "batchnorm CNN (width 16), BN": lambda: make_cnn(True, 16),
}


AMP_VARIANTS = {"bf16": torch.bfloat16, "fp16": torch.float16, "compile_bf16": torch.bfloat16}
# torch.compile modes: "reduce-overhead" replays the compiled step as CUDA graphs (on a GPU), the remedy for
# launch-bound steps; on a CPU it compiles as the default mode does.
COMPILE_MODES = {"compile": None, "compile_bf16": None, "compile_graphs": "reduce-overhead"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(n: int = 1024, seconds: float = 1.0, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> float:
    device = device or torch.device("cpu")
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
        if runs % 10 == 0:
            sync(device)  # keep the queue short so the clock measures finished work
    sync(device)
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


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, adam: str,
               amp_dtype: torch.dtype | None = None) -> float:
    """Seconds per training step, after warm-up (compilation included in warm-up)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **{adam: True})
    # fp16 needs loss scaling to train (the amp recipe's lesson), so its timing includes the scaler's work.
    scaler = torch.amp.GradScaler(x.device.type, enabled=amp_dtype == torch.float16)

    def one_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(5):
        one_step()
    sync(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    sync(x.device)
    return (time.perf_counter() - start) / steps


def measure(name: str, batch: int, steps: int, variant: str, ceiling: float,
            device: torch.device | None = None) -> dict:
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    model = MODELS[name]()
    channels_last = variant == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x, y = images(name, batch, channels_last), torch.randint(0, 10, (batch,))
    flops = step_flops(model, x, y)  # counted on the CPU: the count does not depend on the device
    model, x, y = model.to(device), x.to(device), y.to(device)
    runnable = torch.compile(model, mode=COMPILE_MODES[variant]) if variant in COMPILE_MODES else model
    adam = "fused" if variant == "fused_adam" else "foreach"
    seconds = time_steps(runnable, x, y, steps, adam, AMP_VARIANTS.get(variant))
    achieved = flops / seconds / 1e9
    return {"model": name, "batch": batch, "variant": variant, "adam": adam,
            "mflop_per_step": round(flops / 1e6, 2), "ms_per_step": round(seconds * 1e3, 3),
            "samples_per_s": round(batch / seconds), "gflops": round(achieved, 2),
            "fraction_of_ceiling": round(achieved / ceiling, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--variants", nargs="+", default=["eager", "fused_adam", "channels_last", "compile"],
                        choices=["eager", "fused_adam", "channels_last", "bf16", "fp16", *COMPILE_MODES])
    parser.add_argument("--models", nargs="+", default=[m for m in MODELS if "4096" not in m], choices=list(MODELS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        # The 16-bit variants are compared with the 16-bit ceiling; 8192 fills the GPU, 1024 does not.
        where = torch.cuda.get_device_name(device)
        ceilings = {"fp32": matmul_gflops(8192, device=device),
                    "bf16": matmul_gflops(8192, device=device, dtype=torch.bfloat16)}
    else:
        where, ceilings = f"{args.threads} threads", {"fp32": matmul_gflops(device=device)}
    for kind, value in ceilings.items():
        print(f"{kind} matmul ceiling ({where}): {value:.1f} GFLOP/s", flush=True)
    rows = []
    print("| model | batch | variant | MFLOP/step | ms/step | samples/s | GFLOP/s | of ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for batch in args.batches:
            for variant in args.variants:
                if variant == "channels_last" and "CNN" not in name:
                    continue
                ceiling = ceilings["bf16" if variant in AMP_VARIANTS and "bf16" in ceilings else "fp32"]
                try:
                    row = measure(name, batch, args.steps, variant, ceiling, device)
                except Exception as e:  # noqa: BLE001 - a variant that cannot run here is a result, not a crash
                    row = {"model": name, "batch": batch, "variant": variant, "error": f"{type(e).__name__}: {e}"[:200]}
                    print(f"| {name} | {batch} | {variant} | failed: {row['error']} |", flush=True)
                    rows.append(row)
                    continue
                rows.append(row)
                print(f"| {name} | {batch} | {variant} | {row['mflop_per_step']:.1f} | {row['ms_per_step']:.2f} | "
                      f"{row['samples_per_s']} | {row['gflops']:.1f} | {row['fraction_of_ceiling']:.0%} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"threads": args.threads, "device": args.device,
                                        "ceiling_gflops": round(ceilings["fp32"], 1),
                                        "ceilings_gflops": {k: round(v, 1) for k, v in ceilings.items()},
                                        "machine": machine(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

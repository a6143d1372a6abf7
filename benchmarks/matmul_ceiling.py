"""This machine's matmul ceiling: GFLOP/s of an n×n matmul in fp32 and bf16 (and fp16 on a GPU).

    python benchmarks/matmul_ceiling.py [--n 2048] [--threads 0] [--out benchmarks/results/matmul.json]

Recipes' achieved FLOP/s are compared against this figure. Run it on an otherwise idle machine: the
number is only meaningful without other processes competing for the cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from torch_cookbook.bench import machine


def gflops(n: int, dtype: torch.dtype, device: torch.device, min_seconds: float = 1.0) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    runs, start = 0, time.perf_counter()
    while True:
        a @ b
        runs += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return 2 * n**3 * runs / elapsed / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="0 = torch's default")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    result = {"n": args.n, "threads": torch.get_num_threads(), "device": device.type, "machine": machine(),
              "gflops": {}}
    for name, dtype in dtypes.items():
        # bf16 without native CPU support runs ~300x slower: measure it on a smaller matrix, same FLOP count formula
        n = args.n if device.type == "cuda" or name == "fp32" else min(args.n, 512)
        result["gflops"][name] = round(gflops(n, dtype, device), 2)
        print(f"{name} {n}x{n}: {result['gflops'][name]:.1f} GFLOP/s", flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

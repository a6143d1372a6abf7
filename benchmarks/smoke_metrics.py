"""Record every recipe's metrics at one profile and seed, or compare two such records.

    python benchmarks/smoke_metrics.py record OUT.json [--profile smoke] [--jobs 2] [--only NAME ...]
    python benchmarks/smoke_metrics.py compare BEFORE.json AFTER.json
    python benchmarks/smoke_metrics.py compare benchmarks/results AFTER.json   # seed AFTER's seed of each bench

Used to show that a refactor changed no result: timing metrics (`perf/*`, `*_s`, `*_per_s`, `*_ms`) are left out, every
other metric must be equal bit for bit. Each recipe runs in its own process on one thread.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def is_timing(name: str) -> bool:
    return name.startswith("perf/") or name.endswith(("_s", "_per_s", "_ms"))


def run_one(name: str, profile: str, seed: int, root: Path, threads: int = 1) -> dict:
    cmd = [sys.executable, "-m", "torch_cookbook", "run", name, "--profile", profile, "--seed", str(seed),
           "--threads", str(threads), "--runs-root", str(root)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    summaries = sorted((root / name).glob("*/summary.json"))
    if proc.returncode != 0 or not summaries:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {proc.returncode}: {tail[0]}"}
    metrics = json.loads(summaries[-1].read_text())["metrics"]
    return {k: v for k, v in sorted(metrics.items()) if not is_timing(k)}


def record(args: argparse.Namespace) -> int:
    from torch_cookbook import recipes

    names = args.only or recipes.names()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(names, pool.map(lambda n: run_one(n, args.profile, args.seed, Path(tmp), args.threads),
                                           names)))
    for name, metrics in results.items():
        print(f"{name}: {metrics.get('error', f'{len(metrics)} metrics')}")
    out = {"profile": args.profile, "seed": args.seed, "metrics": results}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 1 if any("error" in m for m in results.values()) else 0


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def bench_metrics(folder: Path, seed: int) -> dict[str, dict]:
    """{recipe: metrics of its committed benchmark run with `seed`}, timings left out."""
    out = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        for run in data.get("runs") or []:
            if run.get("seed") == seed:
                out[data["recipe"]] = {k: v for k, v in sorted(run["metrics"].items()) if not is_timing(k)}
    return out


def compare(args: argparse.Namespace) -> int:
    after_file = json.loads(Path(args.after).read_text())
    after = after_file["metrics"]
    if Path(args.before).is_dir():
        before = {k: v for k, v in bench_metrics(Path(args.before), after_file["seed"]).items() if k in after}
    else:
        before = json.loads(Path(args.before).read_text())["metrics"]
    changed = 0
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, {}), after.get(name, {})
        diffs = [k for k in sorted(set(a) | set(b)) if not same(a.get(k), b.get(k))]
        changed += bool(diffs)
        verdict = "equal" if not diffs else f"{len(diffs)} differ: " + ", ".join(
            f"{k} {b.get(k)} -> {a.get(k)}" for k in diffs[:4])
        print(f"| {name} | {len(b)} | {verdict} |")
    return 1 if changed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("out")
    rec.add_argument("--profile", default="smoke")
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--jobs", type=int, default=2)
    rec.add_argument("--threads", type=int, default=1, help="torch threads per run (as the benchmark used)")
    rec.add_argument("--only", nargs="+")
    cmp = sub.add_parser("compare")
    cmp.add_argument("before")
    cmp.add_argument("after")
    args = parser.parse_args()
    return record(args) if args.command == "record" else compare(args)


if __name__ == "__main__":
    sys.exit(main())

"""Where each recipe's time goes: its quick profile run under `torch.profiler`, in sampled windows, summarised.

    python benchmarks/profile_recipes.py [NAME ...] [--profile quick] [--threads 1]
                                         [--out benchmarks/results/profile.json]

Each recipe runs in its own process (`cookbook run NAME --profile quick`, a fresh cache-warm run) under
`torch.profiler.profile` on the CPU. Recording a whole run keeps every event in memory (dqn's quick profile
passed 23 GB), so the profiler follows a schedule driven by the optimizer: a global post-step hook
(`torch.optim.optimizer.register_optimizer_step_post_hook`) calls `prof.step()` after every optimizer step of any
optimizer, and of each cycle of WAIT + WARMUP + ACTIVE training steps only the last ACTIVE are recorded. The
wall time of the recorded intervals (from one optimizer step to the next) is the denominator of the shares,
so they describe steady-state training: evaluation and plotting between epochs count only where they fall
inside a recorded interval. A recipe with no optimizer (qlearning's table) is recorded whole. Reported, as
shares of the recorded wall time:

- data: inside `engine.loop.take` (its `record_function("data")` range): indexing and device copies;
- optimizer: inside `Optimizer.step` / `Optimizer.zero_grad` (ranges torch records for every optimizer);
- backward: inside the autograd engine's per-node ranges (`autograd::engine::evaluate_function: ...`);
- torch ops, total: the self time of every operator (forward, backward, optimizer, data, evaluation);
- outside torch ops: the rest: Python between operators, environment stepping, scikit-learn and NumPy,
  checkpoint and log I/O;
and the operators with the most self time. The profiler itself adds a few microseconds per operator, so
read the shares, not the seconds. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TOP_OPS = 8
WAIT, WARMUP, ACTIVE = 40, 2, 8  # optimizer steps per profiler cycle; 8 of every 50 are recorded


def profile_one(name: str, profile: str, threads: int) -> dict:
    """Run one recipe in this process under the profiler and summarise the events."""
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.profiler import ProfilerAction, ProfilerActivity, schedule
    from torch.profiler import profile as torch_profile

    from torch_cookbook.cli import main

    recording = (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)
    cycles: list = []  # the key averages of each recorded cycle, taken before the profiler drops its events
    clock = {"recorded_s": 0.0, "steps": 0, "last": 0.0, "recording": False}

    def run(sampled: bool) -> float:
        """The recipe's wall time; a sampled run steps the profiler from the optimizer hook."""
        with tempfile.TemporaryDirectory() as runs_root:
            argv = ["run", name, "--profile", profile, "--threads", str(threads), "--runs-root", runs_root]
            kwargs = {"schedule": schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE),
                      "on_trace_ready": lambda p: cycles.append(p.key_averages())} if sampled else {}
            with torch_profile(activities=[ProfilerActivity.CPU], **kwargs) as prof:
                def after_optimizer_step(*_args) -> None:
                    now = time.perf_counter()
                    if clock["recording"]:
                        clock["recorded_s"] += now - clock["last"]
                    clock["steps"] += 1
                    prof.step()
                    clock["recording"] = prof.current_action in recording
                    clock["last"] = time.perf_counter()  # the profiler's own work in step() is not counted

                hook = register_optimizer_step_post_hook(after_optimizer_step) if sampled else None
                try:
                    t0 = time.perf_counter()
                    code = main(argv)
                    wall = time.perf_counter() - t0
                finally:
                    if hook is not None:
                        hook.remove()
            if not sampled:
                cycles.append(prof.key_averages())
        if code != 0:
            raise SystemExit(f"profile {name}: `cookbook {' '.join(argv)}` exited with {code}")
        return wall

    wall = run(sampled=True)
    if clock["steps"] < WAIT + WARMUP + ACTIVE:  # no optimizer (or too few steps for a cycle): record it whole
        cycles.clear()
        wall = run(sampled=False)
        recorded_s, mode = wall, "whole run"
    else:
        recorded_s = clock["recorded_s"]
        mode = f"{len(cycles)} windows of {ACTIVE} of every {WAIT + WARMUP + ACTIVE} optimizer steps"
    return summarise(name, profile, threads, wall, recorded_s, mode, cycles)


def summarise(name: str, profile: str, threads: int, wall: float, recorded_s: float, mode: str,
              cycles: list) -> dict:
    """Shares of the recorded wall time, from the events of every recorded cycle."""
    total = {"data": 0.0, "optimizer": 0.0, "backward": 0.0, "ops_self": 0.0}
    ops: dict[str, list[float]] = {}
    for events in cycles:
        for e in events:
            inclusive, self_time = e.cpu_time_total / 1e6, e.self_cpu_time_total / 1e6
            if e.key == "data":
                total["data"] += inclusive
            elif e.key.startswith(("Optimizer.step#", "Optimizer.zero_grad#")):
                total["optimizer"] += inclusive
            elif e.key.startswith("autograd::engine::evaluate_function:"):
                total["backward"] += inclusive
            if e.key.startswith("aten::") or e.key.startswith(("mkldnn", "onednn")):
                total["ops_self"] += self_time
                row = ops.setdefault(e.key, [0.0, 0])
                row[0] += self_time
                row[1] += e.count
    top = sorted(((s, key, count) for key, (s, count) in ops.items()), reverse=True)
    return {
        "recipe": name, "profile": profile, "threads": threads, "wall_s": round(wall, 2),
        "recorded": mode, "recorded_s": round(recorded_s, 3),
        "data_share": round(total["data"] / recorded_s, 4),
        "optimizer_share": round(total["optimizer"] / recorded_s, 4),
        "backward_share": round(total["backward"] / recorded_s, 4),
        "torch_ops_share": round(total["ops_self"] / recorded_s, 4),
        "outside_ops_share": round(max(0.0, 1 - total["ops_self"] / recorded_s), 4),
        "top_ops": [{"op": key, "self_s": round(s, 3), "share": round(s / recorded_s, 4), "calls": int(count)}
                    for s, key, count in top[:TOP_OPS]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="recipes (default: all)")
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/profile.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: profile this recipe, print JSON
    args = parser.parse_args()
    if args.one:
        print("PROFILE " + json.dumps(profile_one(args.one, args.profile, args.threads)), flush=True)
        return 0

    from torch_cookbook import recipes
    from torch_cookbook.bench import machine
    from torch_cookbook.engine.runs import git_commit

    names = args.names or recipes.names()
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"recipes": {}}
    rows = dict(previous.get("recipes", {}))
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--profile", args.profile, "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("PROFILE ")), None)
        if proc.returncode != 0 or line is None:
            print(f"profile {name}: failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}", file=sys.stderr)
            continue
        row = json.loads(line[len("PROFILE "):])
        row["commit"] = git_commit()
        rows[name] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)  # written after every recipe: a long pass can be cut
        args.out.write_text(json.dumps({"kind": "profile", "machine": machine(), "torch": torch.__version__,
                                        "recipes": rows}, indent=2) + "\n")
        print(f"{name}: wall {row['wall_s']} s, data {row['data_share']:.1%}, optimizer {row['optimizer_share']:.1%},"
              f" backward {row['backward_share']:.1%}, torch ops {row['torch_ops_share']:.1%}; top op "
              f"{row['top_ops'][0]['op'] if row['top_ops'] else '-'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

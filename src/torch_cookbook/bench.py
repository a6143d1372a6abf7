"""`cookbook bench`: run recipes' full profiles over several seeds and record the evidence.

Each seed runs in its own process (clean peak-RSS figure, no state shared between seeds). The result,
`benchmarks/results/<recipe>.json`, holds every run's summary, mean and std of each metric, whether each
target was met on every seed, time to target where the target metric is logged during training, and
the machine it was measured on. `benchmarks/README.md` is regenerated from all result files.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from torch_cookbook import recipes
from torch_cookbook.engine.runs import git_commit
from torch_cookbook.errors import CookbookError


def machine() -> dict[str, Any]:
    info = cpuinfo()
    cpu = info.get("model name") or platform.processor() or platform.machine()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"cpu": cpu, "cores": os.cpu_count(), "device": device, "torch": torch.__version__,
            "python": platform.python_version(), "isa": cpu_features(info)}


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none, as on macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # end of the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


# The instruction-set extensions that decide 16-bit speed on a CPU: with avx512_bf16 (or AMX) a bf16 matmul is
# several times faster than fp32; without them torch emulates bf16 and it is hundreds of times slower.
ISA_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def cpu_features(info: dict[str, str] | None = None) -> list[str]:
    present = set((cpuinfo() if info is None else info).get("flags", "").split())
    return [f for f in ISA_OF_INTEREST if f in present]


def time_to_target(run_dir: Path, target: dict[str, Any]) -> float | None:
    """Seconds until the target metric was first met, from any metrics.jsonl that logs it (eval/<metric>)."""
    keys = {target["metric"], f"eval/{target['metric']}"}
    best = None
    for path in [run_dir / "metrics.jsonl", *sorted(run_dir.glob("variants/*/metrics.jsonl"))]:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            record = json.loads(line)
            for key in keys & record.keys():
                value = record[key]
                if value is None:
                    continue
                met = value <= target["value"] if target["op"] == "<=" else value >= target["value"]
                if met:
                    best = record["time_s"] if best is None else min(best, record["time_s"])
    return best


def median_steps_per_s(run_dir: Path) -> float | None:
    """Median of the `perf/steps_per_s` records of a run and all its variants (None if it logged none)."""
    rates = []
    for path in sorted(run_dir.rglob("metrics.jsonl")):
        for line in path.read_text().splitlines():
            rate = json.loads(line).get("perf/steps_per_s")
            if isinstance(rate, (int, float)):
                rates.append(rate)
    return round(statistics.median(rates), 2) if rates else None


def data_rates(summary: dict[str, Any]) -> dict[str, float]:
    """Training samples per wall second and the share of wall time spent making batches, over the process
    that wrote the summary ({} for recipes whose batches do not come from `engine.loop.take`)."""
    wall = summary.get("process_wall_s")
    if not wall or not summary.get("train_samples"):
        return {}
    return {"samples_per_s": round(summary["train_samples"] / wall, 1),
            "data_share": round(summary["data_time_s"] / wall, 6)}


def _run_seed(name: str, seed: int, profile: str, runs_root: Path, extra: list[str]) -> dict[str, Any]:
    root = runs_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{seed}"
    cmd = [sys.executable, "-m", "torch_cookbook", "run", name, "--profile", profile, "--seed", str(seed),
           "--runs-root", str(root), *extra]
    print(f"bench {name} seed {seed}: {' '.join(cmd[2:])}", flush=True)
    proc = subprocess.Popen(cmd, text=True)
    # wait4 gives this child's own resource use (its waited-for children included), so seeds run side by
    # side with --jobs still get their own CPU time and peak RSS.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    run_dirs = sorted(root.glob(f"{name}/*/summary.json"))
    if proc.returncode != 0 or not run_dirs:
        raise CookbookError(f"bench {name} seed {seed} failed (exit code {proc.returncode})")
    run_dir = run_dirs[0].parent
    summary = json.loads(run_dirs[0].read_text())
    summary["run_dir"] = str(run_dir)
    summary["time_to_target_s"] = {t["metric"]: time_to_target(run_dir, t) for t in summary["targets"]}
    summary["steps_per_s"] = median_steps_per_s(run_dir)
    summary.update(data_rates(summary))
    summary["cpu_time_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    summary["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux reports KiB
    return summary


def bench_recipe(name: str, seeds: list[int], profile: str, runs_root: Path, extra: list[str],
                 jobs: int = 1) -> dict[str, Any]:
    recipe = recipes.get(name)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = list(pool.map(lambda seed: _run_seed(name, seed, profile, runs_root, extra), seeds))

    metric_names = [k for k, v in runs[0]["metrics"].items() if isinstance(v, (int, float))]
    mean, std = {}, {}
    for key in metric_names:
        values = [r["metrics"].get(key) for r in runs]
        values = [v for v in values if isinstance(v, (int, float))]
        if values:
            mean[key] = statistics.fmean(values)
            std[key] = statistics.pstdev(values) if len(values) > 1 else 0.0
    targets = [{"metric": t.metric, "op": t.op, "value": t.value,
                "met_all_seeds": all(_met(r, t.metric) for r in runs)} for t in recipe.targets]
    return {"recipe": name, "profile": profile, "seeds": seeds, "run_flags": extra, "runs": runs, "mean": mean,
            "std": std, "targets": targets, "jobs": jobs,
            "wall_time_s": {"mean": statistics.fmean(r["wall_time_s"] for r in runs),
                            "max": max(r["wall_time_s"] for r in runs)},
            "cpu_time_s": {"mean": statistics.fmean(r["cpu_time_s"] for r in runs)},
            "peak_rss_mb": {"max": max(r["peak_rss_mb"] for r in runs)},
            "machine": machine(), "commit": git_commit()}


def _met(summary: dict[str, Any], metric: str) -> bool:
    return any(t["metric"] == metric and t["met"] is True for t in summary["targets"])


def write_index(results_dir: Path) -> None:
    """benchmarks/README.md: one table over all committed results."""
    lines = ["# Benchmarks", "", "Generated by `cookbook bench` from `benchmarks/results/*.json`; do not edit.", "",
             "| recipe | profile | seeds | target | mean ± std | met on all seeds | wall time/seed (s) "
             "| CPU time/seed (s) | peak RSS (MB) | steps/s | samples/s | data share | machine |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if "runs" not in data:  # hardware measurements (matmul.json, throughput.json): their own section below
            continue
        m = data["machine"]
        where = f"{m['cpu']} ({m['cores']} cores), {m['device']}, torch {m['torch']}"
        cpu = f"{data['cpu_time_s']['mean']:.0f}" if "cpu_time_s" in data else "-"  # recorded since 2026-11-23
        rss = f"{data['peak_rss_mb']['max']:.0f}" if "peak_rss_mb" in data else "-"
        rates = [r["steps_per_s"] for r in data["runs"] if r.get("steps_per_s") is not None]
        rate = f"{statistics.median(rates):.3g}" if rates else "-"
        samples = [r["samples_per_s"] for r in data["runs"] if r.get("samples_per_s") is not None]
        samples_rate = f"{statistics.median(samples):.3g}" if samples else "-"
        shares = [r["data_share"] for r in data["runs"] if r.get("data_share") is not None]
        share = f"{statistics.median(shares):.1%}" if shares else "-"
        for t in data["targets"]:
            value = data["mean"].get(t["metric"])
            shown = "-" if value is None else f"{value:.4g} ± {data['std'].get(t['metric'], 0):.2g}"
            lines.append(f"| {data['recipe']} | {data['profile']} | {len(data['seeds'])} | "
                         f"{t['metric']} {t['op']} {t['value']:g} | {shown} | "
                         f"{'yes' if t['met_all_seeds'] else 'NO'} | "
                         f"{data['wall_time_s']['mean']:.0f} | {cpu} | {rss} | {rate} | {samples_rate} | {share} | "
                         f"{where} |")
    lines += ["", "steps/s: for each seed, the median over the run's logged intervals (all its variants, evaluation",
              "included) of steps per wall second; the table shows the median over seeds. A step is whatever the",
              "recipe counts as one (usually one optimizer update); compare it across commits and machines, not",
              "across recipes. Results measured before it was recorded show '-'.", "",
              "samples/s and data share: training examples taken per wall second of the run, and the share of",
              "its wall time spent making minibatches (indexing the in-memory tensors and moving them to the",
              "device, timed in `engine.loop.take`); median over seeds. Evaluation is in the denominator of",
              "both. '-' where the recipe builds its batches another way (RL, style, seq2seq, ddp, ...) or the",
              "result predates the measurement."]
    lines += hardware_section(results_dir)
    lines += gpu_section(results_dir.parent / "gpu")
    if plot_time_to_target(results_dir, results_dir.parent / "time_to_target.png"):
        lines += ["", "Time to target: wall seconds from the start of a run to the first evaluation at which the",
                  "target was met (mean over the seeds that met it; targets not logged during training are left",
                  "out).", "",
                  "![time to target](time_to_target.png)"]
    (results_dir.parent / "README.md").write_text("\n".join(lines) + "\n")


def gpu_section(gpu_dir: Path) -> list[str]:
    """Recipe benches and throughput rows measured on a lent GPU: benchmarks/gpu/<device>-<date>/*.json.

    They live apart from results/ because the reference machine has no GPU and `cookbook bench` there would
    overwrite them; each folder is one session's measurements on one device (its own torch version)."""
    lines: list[str] = []
    for folder in sorted(p for p in gpu_dir.glob("*") if p.is_dir()):
        rows, machine_text = [], ""
        for path in sorted(folder.glob("*.json")):
            data = json.loads(path.read_text())
            if "machine" in data and not machine_text:
                m = data["machine"]
                machine_text = f"{m['device']}, {m['cpu']} ({m['cores']} cores), torch {m['torch']}"
            if "runs" in data:
                given = data.get("run_flags", [])
                # bench's own `--threads N` comes first; show the flags the user gave after `--`
                flags = " ".join(given[2:] if given[:1] == ["--threads"] else given)
                for t in data["targets"]:
                    value = data["mean"].get(t["metric"])
                    shown = "-" if value is None else f"{value:.4g} ± {data['std'].get(t['metric'], 0):.2g}"
                    rows.append(f"| {data['recipe']} `{flags}` | {len(data['seeds'])} | {t['metric']} {t['op']} "
                                f"{t['value']:g} | {shown} | {'yes' if t['met_all_seeds'] else 'NO'} | {path.name} |")
            elif "rows" in data:
                for r in data["rows"]:
                    if "error" not in r:
                        rows.append(f"| {r['model']}, batch {r['batch']}, {r['variant']} | - | ms/step | "
                                    f"{r['ms_per_step']:.2f} | - | {path.name} |")
        if rows:
            lines += ["", f"## Measured on a GPU: {folder.name}", "", f"{machine_text}. Files in "
                      f"`benchmarks/gpu/{folder.name}/`; the write-up is in docs/performance.md (\"GPU\").", "",
                      "| what | seeds | target / measure | mean ± std | met on all seeds | file |",
                      "|---|---|---|---|---|---|", *rows]
    return lines


def hardware_section(results_dir: Path) -> list[str]:
    """The matmul ceiling (benchmarks/matmul_ceiling.py) and achieved training FLOP/s (benchmarks/throughput.py)."""
    lines: list[str] = []
    matmul, throughput = results_dir / "matmul.json", results_dir / "throughput.json"
    if matmul.exists():
        data = json.loads(matmul.read_text())
        m = data["machine"]
        rates = ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in data["gflops"].items())
        lines += ["", "## Hardware ceiling", "",
                  f"`python benchmarks/matmul_ceiling.py --threads {data['threads']}` on {m['cpu']} ({m['cores']} "
                  f"cores, {', '.join(m.get('isa', [])) or 'ISA not recorded'}), {data['device']}: "
                  f"{data['n']}x{data['n']} matmul {rates} (bf16 on at most 512x512 on a CPU)."]
    if throughput.exists():
        data = json.loads(throughput.read_text())
        lines += ["", "## Achieved training FLOP/s", "",
                  f"`python benchmarks/throughput.py --threads {data['threads']}`: FLOPs of one training step "
                  "(forward + backward, FlopCounterMode) over the measured step time (Adam, data in memory), as a "
                  f"fraction of a 1024x1024 fp32 matmul measured in the same process ({data['ceiling_gflops']} "
                  "GFLOP/s).", "",
                  "| model | batch | variant | MFLOP/step | ms/step | samples/s | GFLOP/s | of ceiling |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in data["rows"]:
            if "error" in r:
                lines.append(f"| {r['model']} | {r['batch']} | {r['variant']} | failed: {r['error']} | | | | |")
                continue
            lines.append(f"| {r['model']} | {r['batch']} | {r['variant']} | {r['mflop_per_step']:.1f} | "
                         f"{r['ms_per_step']:.2f} | {r['samples_per_s']} | {r['gflops']:.1f} | "
                         f"{r['fraction_of_ceiling']:.0%} |")
    profile = results_dir / "profile.json"
    if profile.exists():
        data = json.loads(profile.read_text())
        m = data["machine"]
        lines += ["", "## Where the time goes", "",
                  "`python benchmarks/profile_recipes.py --profile quick --threads 1`: each recipe's quick profile "
                  f"under torch.profiler on {m['cpu']} ({', '.join(m.get('isa', []))}); shares of the recorded "
                  "wall time: sampled windows of training steps, or the whole run where a recipe has no optimizer "
                  "(docs/performance.md explains the columns).", "",
                  "| recipe | wall (s) | recorded | data | optimizer | backward | torch ops | outside torch ops "
                  "| top op (share) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in sorted(data["recipes"].items()):
            top = r["top_ops"][0] if r["top_ops"] else None
            top_text = f"{top['op']} ({top['share']:.0%})" if top else "-"
            recorded = f"{r['recorded_s']:.1f} s, {r['recorded']}" if "recorded" in r else "whole run"
            lines.append(f"| {name} | {r['wall_s']:.0f} | {recorded} | {r['data_share']:.1%} | "
                         f"{r['optimizer_share']:.1%} | {r['backward_share']:.1%} | {r['torch_ops_share']:.0%} | "
                         f"{r['outside_ops_share']:.0%} | {top_text} |")
    return lines


def plot_time_to_target(results_dir: Path, out: Path) -> bool:
    """A bar per (recipe, target) whose target metric is logged during training; False when there is none."""
    bars = []
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if "runs" not in data:
            continue
        for t in data["targets"]:
            times = [r.get("time_to_target_s", {}).get(t["metric"]) for r in data["runs"]]
            times = [x for x in times if x is not None]
            if times:
                label = f"{data['recipe']}: {t['metric']}"
                bars.append((label, statistics.fmean(times), len(times), len(data["runs"])))
    if not bars:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(bars) + 1.2))
    ax.barh([b[0] for b in bars], [b[1] for b in bars], color="tab:blue")
    for i, (_, seconds, met, total) in enumerate(bars):
        ax.text(seconds, i, f" {seconds:.0f} s ({met}/{total} seeds)", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("wall seconds to first meet the target (mean over seeds that met it)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


RESULTS_DIR = Path("benchmarks/results")


def default_results_dir(device: str, results_dir: Path = RESULTS_DIR) -> Path:
    """Where a bench result goes unless --out says: results/ for the reference machine's CPU runs, and
    gpu/<gpu>-<date>/ beside it for runs whose summary names a CUDA device ("cuda (NVIDIA H200)")."""
    if not device.startswith("cuda"):
        return results_dir
    name = device.removeprefix("cuda").strip(" ()").lower().removeprefix("nvidia ")
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "gpu"
    return results_dir.parent / "gpu" / f"{slug}-{time.strftime('%Y-%m-%d')}"


def bench_main(argv: list[str]) -> int:
    from torch_cookbook.launch import Parser

    # Everything after `--` is handed to every `cookbook run` (e.g. `-- --device cuda --hidden 4096`), validated
    # once here against each recipe's config so a bad flag fails before any seed starts.
    run_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = Parser(prog="cookbook bench", description="Full-profile benchmarks over several seeds; flags after "
                    "`--` go to every run (they are recorded in the result as run_flags).")
    parser.add_argument("names", nargs="*", help="recipes to benchmark (default: --all)")
    parser.add_argument("--all", action="store_true", help="every registered recipe")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--profile", default="full", choices=("smoke", "quick", "full"))
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for <recipe>.json (default: benchmarks/results for CPU runs; "
                             "benchmarks/gpu/<gpu>-<date>/ for runs on a GPU, so they never replace the CPU results)")
    parser.add_argument("--runs-root", type=Path, default=Path("runs/bench"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = per core)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run side by side (give --threads 1 on 2 cores)")
    args = parser.parse_args(argv)
    names = recipes.names() if args.all or not args.names else args.names
    for flag in run_flags:
        if flag.split("=")[0] in ("--profile", "--seed", "--runs-root", "--threads", "--resume", "--all"):
            parser.error(f"{flag} after --: bench sets it for every run itself; use bench's own option")
    for name in names:
        recipes.get(name)  # unknown names fail before any work
        if run_flags:
            from torch_cookbook.launch import check_run_flags

            check_run_flags(name, args.profile, run_flags)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: must be at least 1")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be at least 1")
    (args.out or RESULTS_DIR).mkdir(parents=True, exist_ok=True)  # the index is written even if every run fails
    failed = []
    for name in names:
        try:
            result = bench_recipe(name, list(range(args.seeds)), args.profile, args.runs_root,
                                  ["--threads", str(args.threads), *run_flags], args.jobs)
        except CookbookError as e:
            print(f"cookbook bench: {e}", file=sys.stderr)
            failed.append(name)
            continue
        out = (args.out or default_results_dir(result["runs"][0]["device"])) / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        verdicts = ", ".join(f"{t['metric']} {t['op']} {t['value']:g}: {'met' if t['met_all_seeds'] else 'NOT met'}"
                             for t in result["targets"])
        print(f"{name}: {verdicts} -> {out}", flush=True)
    write_index(args.out or RESULTS_DIR)
    if failed:
        print(f"cookbook bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0

"""`cookbook bench`: run recipes' full profiles over several seeds and record the evidence.

Each seed runs in its own process (clean peak-RSS figure, no state shared between seeds). The result,
`benchmarks/results/<recipe>.json`, holds every run's summary, mean and sample std (n-1) of each metric,
whether each target was met on every seed, time to target where the target metric is logged during training,
the machine it was measured on (CPU ISA flags included) and the code: one commit and one hash of the package's
files for all seeds, from a clean tree unless `--allow-dirty`. `benchmarks/README.md` is regenerated from all
result files.
"""

from __future__ import annotations

import json
import math
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
from torch_cookbook.engine.runs import code_version, dirty_paths
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


# The instruction-set extensions that decide a CPU's speed on these recipes: with avx512_bf16 (or AMX) a bf16
# matmul is several times faster than fp32; without them torch emulates bf16 and it is hundreds of times slower.
# x86 names from the `flags` line, Arm ones from `Features`.
ISA_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile",
                   "asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm")


def cpu_features(info: dict[str, str] | None = None) -> list[str]:
    info = cpuinfo() if info is None else info
    present = set((info.get("flags") or info.get("Features") or "").split())
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
                 jobs: int = 1, code: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the seeds and aggregate them; `code` is `code_version()` when the bench started (every seed must have
    run on it)."""
    recipe = recipes.get(name)
    code = code or code_version()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = list(pool.map(lambda seed: _run_seed(name, seed, profile, runs_root, extra), seeds))
    check_one_code(name, runs, code)
    across = getattr(recipe.module, "across_seeds", None)  # metrics only the seeds together measure (pooled tests)
    pooled = across([Path(r["run_dir"]) for r in runs]) if across else {}
    targets = [(t.metric, t.op, t.value, t.across_seeds) for t in recipe.targets]
    return {"recipe": name, "profile": profile, "seeds": seeds, "run_flags": extra, "runs": runs,
            **aggregate(runs, targets, pooled), "jobs": jobs,
            "wall_time_s": {"mean": statistics.fmean(r["wall_time_s"] for r in runs),
                            "max": max(r["wall_time_s"] for r in runs)},
            "cpu_time_s": {"mean": statistics.fmean(r["cpu_time_s"] for r in runs)},
            "peak_rss_mb": {"max": max(r["peak_rss_mb"] for r in runs)},
            "machine": machine(), "commit": code["commit"], "src_sha256": code["src_sha256"],
            "dirty": bool(code["dirty"]) or any(bool(r.get("dirty")) for r in runs)}


def aggregate(runs: list[dict[str, Any]], targets: list[tuple], pooled: dict[str, float] | None = None) -> dict:
    """Mean and sample standard deviation (n-1; none for one seed) of each metric over the seeds that measured it,
    which seeds did not, and each target's verdict over all seeds: a seed that did not measure the target metric
    (missing, None or NaN) has not met it. A target the runs' summaries did not judge (its settings, `for`, are not
    the runs' own: a user's --data, another environment) gets no verdict (None) and keeps its `for`. A target
    (metric, op, value, True) is about the seeds together: judged once, on `pooled[metric]` (what the recipe's
    `across_seeds` measured over the runs) or else on the mean over the seeds."""
    pooled = {k: v.item() if hasattr(v, "item") else v for k, v in (pooled or {}).items()}  # numpy's: JSON's
    names = list(dict.fromkeys(k for r in runs for k, v in r["metrics"].items() if _is_number(v)))
    mean, std, unmeasured = {}, {}, {}
    for key in names:
        values = [r["metrics"][key] for r in runs if _is_number(r["metrics"].get(key))]
        mean[key] = statistics.fmean(values)
        if len(values) > 1:
            std[key] = statistics.stdev(values)
        if len(values) < len(runs):
            unmeasured[key] = [r["seed"] for r in runs if not _is_number(r["metrics"].get(key))]
    verdicts = []
    for metric, op, value, *across in targets:
        not_judged = [t["for"] for r in runs for t in r.get("targets", [])
                      if (t["metric"], t["op"], t["value"]) == (metric, op, value) and "for" in t]
        if across and across[0]:
            measured = pooled.get(metric, mean.get(metric))
            met = None if not_judged else _met(measured, op, value)
            extra: dict[str, Any] = {"across_seeds": True, "measured": measured}
        else:
            met = None if not_judged else all(_met(r["metrics"].get(metric), op, value) for r in runs)
            extra = {}
        verdicts.append({"metric": metric, "op": op, "value": value, "met_all_seeds": met, **extra,
                         **({"for": not_judged[0]} if not_judged else {})})
    return {"mean": mean, "std": std, "std_ddof": 1, "unmeasured": unmeasured, "pooled": pooled,
            "targets": verdicts}


def _is_number(value: Any) -> bool:
    """Measured, as `Target.met` counts it: a number that is not NaN (inf is a measured divergence)."""
    return isinstance(value, (int, float)) and not math.isnan(value)


def _met(value: Any, op: str, threshold: float) -> bool:
    if not _is_number(value):
        return False
    return bool(value <= threshold if op == "<=" else value >= threshold)  # numpy's bool is not JSON's


def check_one_code(name: str, runs: list[dict[str, Any]], code: dict[str, Any]) -> None:
    """Refuse, in one line, to aggregate seeds that ran on different code: the tree moved under the bench."""
    seen = [(code["commit"], code["src_sha256"])] + [(r.get("commit"), r.get("src_sha256")) for r in runs]
    moved = [r["seed"] for r in runs if r.get("src_sha256_at_end")]
    if len(set(seen)) > 1 or moved:
        where = ", ".join(f"seed {r['seed']}: {r.get('commit')} src {str(r.get('src_sha256'))[:12]}" for r in runs)
        raise CookbookError(f"bench {name}: the seeds did not all run on the code the bench started on (commit "
                            f"{code['commit']} src {code['src_sha256'][:12]}; {where}"
                            + (f"; changed during seed {', '.join(map(str, moved))}" if moved else "")
                            + "); rerun on a tree that does not change")


def check_clean_tree(allow_dirty: bool) -> None:
    """`cookbook bench` measures committed code: refuse a dirty checkout in one line unless told otherwise."""
    paths = dirty_paths()
    if paths and not allow_dirty:
        shown = ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
        raise CookbookError(f"the working tree differs from its commit ({shown}); commit first so the result names "
                            "its code, or pass --allow-dirty (the result then records dirty: true)")


def write_index(results_dir: Path) -> None:
    """benchmarks/README.md: one table over all committed results."""
    lines = ["# Benchmarks", "", "Generated by `cookbook bench` from `benchmarks/results/*.json`; do not edit.", "",
             "| recipe | profile | seeds | target | mean ± std (n−1) | met on all seeds | wall time/seed (s) "
             "| CPU time/seed (s) | peak RSS (MB) | steps/s | samples/s | data share | machine | commit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if "runs" not in data:  # hardware measurements (matmul.json, throughput.json): their own section below
            continue
        m = data["machine"]
        isa = ", ".join(m["isa"]) if "isa" in m else "ISA not recorded"
        where = f"{m['cpu']} ({m['cores']} cores; {isa}), {m['device']}, torch {m['torch']}"
        commit = (data.get("commit", "-") + (f" src {data['src_sha256'][:8]}" if data.get("src_sha256") else "")
                  + (" dirty" if data.get("dirty") else ""))
        cpu = f"{data['cpu_time_s']['mean']:.0f}" if "cpu_time_s" in data else "-"  # recorded since 2026-11-23
        rss = f"{data['peak_rss_mb']['max']:.0f}" if "peak_rss_mb" in data else "-"
        rates = [r["steps_per_s"] for r in data["runs"] if r.get("steps_per_s") is not None]
        rate = f"{statistics.median(rates):.3g}" if rates else "-"
        samples = [r["samples_per_s"] for r in data["runs"] if r.get("samples_per_s") is not None]
        samples_rate = f"{statistics.median(samples):.3g}" if samples else "-"
        shares = [r["data_share"] for r in data["runs"] if r.get("data_share") is not None]
        share = f"{statistics.median(shares):.1%}" if shares else "-"
        for t in data["targets"]:
            lines.append(f"| {data['recipe']} | {data['profile']} | {len(data['seeds'])} | "
                         f"{t['metric']} {t['op']} {t['value']:g} | {measured_text(data, t)} | "
                         f"{verdict_text(t)} | "
                         f"{data['wall_time_s']['mean']:.0f} | {cpu} | {rss} | {rate} | {samples_rate} | {share} | "
                         f"{where} | {commit} |")
    lines += ["", "mean ± std: over the seeds that measured the metric; std is the sample standard deviation (n−1 in",
              "the denominator, `statistics.stdev`), none for a single seed. '(n)' marks a result recorded before",
              "that, whose std divides by n. A seed that did not measure a target's metric has not met it. commit:",
              "the one commit every seed of the result ran on, and the SHA-256 of the package's files at it ('src'; a",
              "later commit that changed only docs or results keeps it). 'dirty': uncommitted changes (--allow-dirty).",
              "'the seeds together': a target about all the seeds at once (a pooled test, a mean over seeds),",
              "judged once on that figure.",
              "", "steps/s: for each seed, the median over the run's logged intervals (all its variants, evaluation",
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


def measured_text(data: dict[str, Any], target: dict[str, Any]) -> str:
    """What a result measured for a target: mean ± std over the seeds, or one figure over the seeds together."""
    if target.get("across_seeds"):
        value = target.get("measured")
        return "-" if value is None else f"{value:.4g} (the seeds together)"
    return mean_std_text(data, target["metric"])


def mean_std_text(data: dict[str, Any], metric: str) -> str:
    """`mean ± std` of a metric in a result file: '-' when no seed measured it, the mean alone for one seed."""
    value = data["mean"].get(metric)
    if value is None:
        return "-"
    std = data["std"].get(metric)
    if std is None:
        return f"{value:.4g}"
    return f"{value:.4g} ± {std:.2g}" + ("" if data.get("std_ddof") == 1 else " (n)")


def verdict_text(target: dict[str, Any]) -> str:
    """A result's target verdict: yes, NO, or not judged (the runs were outside the target's settings)."""
    return {True: "yes", False: "NO", None: "not judged"}[target["met_all_seeds"]]


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
                    rows.append(f"| {data['recipe']} `{flags}` | {len(data['seeds'])} | {t['metric']} {t['op']} "
                                f"{t['value']:g} | {mean_std_text(data, t['metric'])} | "
                                f"{verdict_text(t)} | {path.name} |")
            elif "rows" in data:
                for r in data["rows"]:
                    if "error" not in r:
                        rows.append(f"| {r['model']}, batch {r['batch']}, {r['variant']} | - | ms/step | "
                                    f"{r['ms_per_step']:.2f} | - | {path.name} |")
        if rows:
            lines += ["", f"## Measured on a GPU: {folder.name}", "", f"{machine_text}. Files in "
                      f"`benchmarks/gpu/{folder.name}/`; the write-up is in docs/performance.md (\"GPU\").", "",
                      "| what | seeds | target / measure | mean ± std (n−1) | met on all seeds | file |",
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
    parser.add_argument("--allow-dirty", action="store_true",
                        help="bench a working tree with uncommitted changes (the result records dirty: true)")
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
    check_clean_tree(args.allow_dirty)
    code = code_version()  # every seed of every result must run on this code
    (args.out or RESULTS_DIR).mkdir(parents=True, exist_ok=True)  # the index is written even if every run fails
    failed = []
    for name in names:
        try:
            result = bench_recipe(name, list(range(args.seeds)), args.profile, args.runs_root,
                                  ["--threads", str(args.threads), *run_flags], args.jobs, code)
        except CookbookError as e:
            print(f"cookbook bench: {e}", file=sys.stderr)
            failed.append(name)
            continue
        out = (args.out or default_results_dir(result["runs"][0]["device"])) / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        verdicts = ", ".join(f"{t['metric']} {t['op']} {t['value']:g}: "
                             + {True: "met", False: "NOT met", None: "not judged"}[t["met_all_seeds"]]
                             for t in result["targets"])
        print(f"{name}: {verdicts} -> {out}", flush=True)
    write_index(args.out or RESULTS_DIR)
    if failed:
        print(f"cookbook bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0

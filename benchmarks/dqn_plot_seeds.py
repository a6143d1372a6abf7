"""DQN learning curves over several runs (e.g. a bench's seeds): training return and the greedy evaluations per seed.

    python benchmarks/dqn_plot_seeds.py RUN_DIR [RUN_DIR ...] --out docs/img/dqn_learning_curve_3seeds.png

Made docs/img/dqn_learning_curve_3seeds.png from three full-profile seeds. Left: each run's training returns (from
metrics.jsonl) smoothed over 20 episodes, sampled every `--grid` environment steps, as the mean over the runs with a
min-max band (cut where the shortest run stopped). Right: each run's periodic greedy evaluations, with the two
policies its summary.json scores on the same fresh episodes: best.pt (star) and the last weights (diamond).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from torch_cookbook.recipes.dqn import moving_average


def read_run(run_dir: Path) -> tuple[list[dict], dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return records, json.loads((run_dir / "summary.json").read_text())


def plot_seeds(run_dirs: list[Path], out: Path, grid: int = 2_500) -> None:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    curves = []
    for i, d in enumerate(run_dirs):
        records, summary = read_run(Path(d))
        pts = [(r["step"], r["train/episode_return"]) for r in records if "train/episode_return" in r]
        steps, returns = np.array([p[0] for p in pts]), moving_average([p[1] for p in pts], 20)
        xs = np.arange(grid, steps.max() + 1, grid)
        curves.append(np.interp(xs, steps, returns))

        color, m = f"C{i}", summary["metrics"]
        ev = [(r["step"], r["eval/return_mean"]) for r in records if "eval/return_mean" in r]
        ax2.plot(*zip(*ev), "o-", color=color, markersize=3, linewidth=1, label=f"seed {summary['seed']}")
        ax2.plot(m["best_eval_step"], m["eval_return_mean"], "*", color=color, markersize=14, markeredgecolor="k")
        ax2.plot(m["env_steps"], m["final_return_mean"], "D", color=color, markersize=8, markeredgecolor="k")
    n = min(len(c) for c in curves)
    ys = np.stack([c[:n] for c in curves])
    xs = xs[:n]
    ax.plot(xs, ys.mean(0), color="tab:blue", label=f"mean of {len(curves)} seeds")
    ax.fill_between(xs, ys.min(0), ys.max(0), color="tab:blue", alpha=0.25, label="min-max over seeds")
    ax.set(xlabel="environment step", ylabel="episode return", ylim=(0, 620),
           title="training return (ε-greedy, 20-episode mean)")
    ax2.plot([], [], "*", color="grey", markersize=12, markeredgecolor="k", label="best.pt, 100 fresh episodes")
    ax2.plot([], [], "D", color="grey", markersize=7, markeredgecolor="k", label="last weights, same episodes")
    ax2.set(xlabel="environment step", title="greedy evaluations (20 episodes) and the scored policies")
    for a in (ax, ax2):
        a.axhline(475, color="grey", linewidth=0.8, linestyle="--")
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    ax2.legend(loc="upper left", fontsize=8, ncol=3)
    fig.suptitle("DQN on CartPole-v1, full profile (100k environment steps)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="dqn run directories (metrics.jsonl, summary.json)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--grid", type=int, default=2_500, help="environment steps between curve points")
    args = parser.parse_args()
    plot_seeds(args.runs, args.out, args.grid)


if __name__ == "__main__":
    main()

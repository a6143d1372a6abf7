"""DQN learning curve over several runs (e.g. a bench's seeds): mean training return with a min-max band.

    python benchmarks/dqn_plot_seeds.py RUN_DIR [RUN_DIR ...] --out docs/img/dqn_learning_curve_3seeds.png

Made docs/img/dqn_learning_curve_3seeds.png from the three seeds of the dqn bench. Each run's training
returns (from metrics.jsonl) are smoothed over 20 episodes and sampled every `--grid` environment steps;
the curves are cut where the shortest run stopped.
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


def plot_seeds(run_dirs: list[Path], out: Path, grid: int = 2_500) -> None:
    curves = []
    for d in run_dirs:
        records = [json.loads(line) for line in (Path(d) / "metrics.jsonl").read_text().splitlines()]
        pts = [(r["step"], r["train/episode_return"]) for r in records if "train/episode_return" in r]
        steps, returns = np.array([p[0] for p in pts]), moving_average([p[1] for p in pts], 20)
        xs = np.arange(grid, steps.max() + 1, grid)
        curves.append(np.interp(xs, steps, returns))
    n = min(len(c) for c in curves)
    ys = np.stack([c[:n] for c in curves])
    xs = xs[:n]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(xs, ys.mean(0), color="tab:blue", label=f"mean of {len(curves)} seeds")
    ax.fill_between(xs, ys.min(0), ys.max(0), color="tab:blue", alpha=0.25, label="min-max over seeds")
    ax.axhline(475, color="grey", linewidth=0.8, linestyle="--", label="target 475")
    ax.set(xlabel="environment step", ylabel="training return (20-episode mean)", ylim=(0, 520),
           title="DQN on CartPole-v1")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="dqn run directories (each with metrics.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--grid", type=int, default=2_500, help="environment steps between curve points")
    args = parser.parse_args()
    plot_seeds(args.runs, args.out, args.grid)


if __name__ == "__main__":
    main()

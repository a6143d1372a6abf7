"""The Fashion-MNIST study of transfer learning: paired label draws, and the paired comparison pooled over runs.

Splits. Validation: `val_per_class` images of each class of Fashion-MNIST *train*, fixed (`SPLIT_SEED`) for every
run; it chooses learning rates and steps (by hand, on the docs page) and each draw's best pretrained method and
better scratch arm. Test: `test_per_class` of each class of Fashion-MNIST *test*, fixed likewise. Labelled
images: a run with --seed s does draws 5s, 5s+1, ... (`draw_ids`); draw j takes `per_class` images of each class
from the rest of train, drawn by j, nested across label budgets. Every arm of a run trains on the same images in a
draw, so their differences are paired.

`save_draws` writes a run's per-draw validation and test accuracies (`draws.json`); `pool` reads the runs' files
back and `paired_summary` gives the mean paired difference and its 95% t-interval over the draws.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from torch_cookbook.data import fashion_mnist, mnist_digits, transfer_data
from torch_cookbook.data.transfer_data import TargetImages
from torch_cookbook.errors import DataError

DRAWS_PER_SEED = 5  # a run with --seed s owns draws 5s .. 5s+4, so seeds never share a draw
SPLIT_SEED = 20_000
DRAWS_FILE = "draws.json"


def draw_ids(seed: int, draws: int) -> list[int]:
    """The draws a run with `seed` does: the first `draws` of its five."""
    return [DRAWS_PER_SEED * seed + d for d in range(draws)]


def first_draw(cfg: Any) -> int | None:
    """The draw whose models `predict` uses: a Fashion-MNIST run's first; None for the other studies (one draw)."""
    return draw_ids(cfg.seed, 1)[0] if cfg.study == "fashion" else None


def variant_name(method: str, per_class: int, draw: int | None) -> str:
    """The run's sub-run of one arm at one label budget in one draw."""
    return f"{method}_{per_class}" if draw is None else f"{method}_{per_class}_draw{draw}"


def each_arm(draws: Sequence[TargetImages], budgets: Sequence[int], arms: Sequence[str],
             result_of: Callable[[TargetImages, int, str], dict[str, float]]) -> list[dict[str, Any]]:
    """[{"draw": j, "results": {k: {arm: result_of(target, k, arm)}}}], draw by draw, budget by budget, in order."""
    return [{"draw": t.draw, "results": {k: {arm: result_of(t, k, arm) for arm in arms} for k in budgets}}
            for t in draws]


def fixed_per_class(labels: torch.Tensor, per_class: int, generator_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rest): `per_class` indices of each class drawn by a fixed generator, and all the others."""
    fixed = torch.Generator().manual_seed(generator_seed)
    chosen, rest = [], []
    for c in range(int(labels.max()) + 1):
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=fixed)]
        chosen.append(members[:per_class])
        rest.append(members[per_class:])
    return torch.cat(chosen), torch.cat(rest)


def fashion_draws(labels_per_class: Sequence[int], seed: int, draws: int, val_per_class: int, test_per_class: int,
                  size: int, download: bool = False) -> list[TargetImages]:
    """One `TargetImages` per draw of the run with `seed`, all sharing one tensor of the images any of them uses
    (uint8 (N, 1, size, size)), its 28×28 originals (`native`, for the scratch ResNet-18) and the fixed val and
    test sets; `train[k]` is the draw's k labelled images per class."""
    data = fashion_mnist.load(download=download)
    val, pool = fixed_per_class(data.train_labels, val_per_class, SPLIT_SEED)
    test, _ = fixed_per_class(data.test_labels, test_per_class, SPLIT_SEED)
    drawn = {j: mnist_digits.draw_per_class(data.train_labels, pool, max(labels_per_class), j)
             for j in draw_ids(seed, draws)}
    train_used = torch.unique(torch.cat([val, *drawn.values()]))
    native = torch.cat([data.train_images[train_used], data.test_images[test]]).unsqueeze(1)
    labels = torch.cat([data.train_labels[train_used], data.test_labels[test]])
    position = torch.full((len(data.train_labels),), -1, dtype=torch.int64)  # train index -> row of `native`
    position[train_used] = torch.arange(len(train_used))
    images = torch.from_numpy(transfer_data.resize(native.numpy(), size))
    test_rows = torch.arange(len(train_used), len(labels))
    out = []
    for j, chosen in drawn.items():
        per_class = [chosen[data.train_labels[chosen] == c] for c in range(10)]
        train = {k: position[torch.cat([p[:k] for p in per_class])] for k in labels_per_class}
        out.append(TargetImages(images, labels, fashion_mnist.CLASSES, train, test_rows, position[val],
                                name="Fashion-MNIST", native=native, draw=j))
    return out


def target_sets(cfg: Any) -> list[TargetImages]:
    """A transfer config's target task: each label draw of the Fashion-MNIST study, or the one of the digits or of
    the user's folders (`transfer_data.target_images`)."""
    if cfg.study != "fashion":
        return [transfer_data.target_images(cfg)]
    return fashion_draws(cfg.budgets, cfg.seed, cfg.draws, cfg.val_per_class, cfg.effective("test_per_class"),
                         cfg.effective("image_size"), cfg.download)


# ---- the paired comparison over draws --------------------------------------------------------------------
def best_on_validation(results: dict[str, dict[str, float]], arms: Sequence[str]) -> str:
    """The arm among `arms` (those the run has) with the highest validation accuracy (the first of equals)."""
    return max([arm for arm in arms if arm in results], key=lambda arm: results[arm]["val_accuracy"])


def paired_summary(differences: Sequence[float]) -> dict[str, float]:
    """Mean of paired differences and its two-sided 95% t-interval (n - 1 degrees of freedom)."""
    from scipy.stats import t

    n = len(differences)
    if n < 2:
        raise DataError(f"{n} paired draw(s): a t-interval needs at least 2")
    mean = statistics.fmean(differences)
    half = t.ppf(0.975, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "draws": float(n)}


def draw_comparison(draw: dict[int, dict[str, dict[str, float]]], scratch: Sequence[str],
                    pretrained: Sequence[str]) -> dict[int, dict[str, Any]]:
    """Per label budget: the better scratch arm and the best pretrained method, each chosen on validation, their
    test accuracies and the difference (pretrained minus scratch)."""
    out = {}
    for k, results in draw.items():
        s, p = best_on_validation(results, scratch), best_on_validation(results, pretrained)
        out[k] = {"scratch": s, "pretrained": p, "difference": results[p]["accuracy"] - results[s]["accuracy"]}
    return out


def summarise(draws: list[dict[str, Any]], scratch: Sequence[str], pretrained: Sequence[str]) -> dict[str, float]:
    """Metrics over draws (each {"draw": j, "results": {k: {arm: {accuracy, val_accuracy}}}}): every arm's mean
    test and validation accuracy per budget, the means of the chosen arms (best_scratch_{k}_accuracy,
    best_pretrained_{k}_accuracy), the chosen pretrained method minus each scratch arm (pretrained_vs_{arm}_{k}_mean)
    and pretrained_minus_scratch_{k}_{mean, ci_low, ci_high, draws} (the interval only with two draws or more)."""
    out: dict[str, float] = {}
    budgets = sorted({int(k) for d in draws for k in d["results"]})
    for k in budgets:
        rows = [{arm: r for arm, r in d["results"][k].items()} for d in draws]
        for arm in rows[0]:
            for key in ("accuracy", "val_accuracy"):
                out[f"{arm}_{k}_{key}"] = statistics.fmean(r[arm][key] for r in rows)
        compared = [draw_comparison({k: r}, scratch, pretrained)[k] for r in rows]
        for role in ("scratch", "pretrained"):
            out[f"best_{role}_{k}_accuracy"] = statistics.fmean(r[c[role]]["accuracy"] for r, c in zip(rows, compared))
        for arm in (a for a in scratch if a in rows[0]):  # against each scratch arm alone, for the docs
            out[f"pretrained_vs_{arm}_{k}_mean"] = statistics.fmean(
                r[c["pretrained"]]["accuracy"] - r[arm]["accuracy"] for r, c in zip(rows, compared))
        differences = [c["difference"] for c in compared]
        if len(differences) > 1:
            out.update({f"pretrained_minus_scratch_{k}_{key}": v for key, v in paired_summary(differences).items()})
        else:
            out[f"pretrained_minus_scratch_{k}_mean"] = differences[0]
    return out


def study_metrics(study: str, measured: list[dict[str, Any]], scratch: Sequence[str], pretrained: Sequence[str],
                  order: Sequence[str]) -> dict[str, float]:
    """Fashion-MNIST: `summarise` over the draws. The digits and user data (one draw): each method's accuracies
    ({method}_{k}_accuracy, _val_accuracy) and its gain over scratch at 10 labels per class ({method}_gain_10);
    with a validation split, the method best on it at the largest budget (best_method_chosen, its index in
    `order`) with its best_val_accuracy and best_accuracy (test)."""
    if study == "fashion":
        return summarise(measured, scratch, pretrained)
    out = {}
    for k, results in measured[0]["results"].items():
        for method, result in results.items():
            out.update({f"{method}_{k}_{key}": value for key, value in result.items()})
    for method in ("finetune", "probe", "lpft"):
        out[f"{method}_gain_10"] = out[f"{method}_10_accuracy"] - out["scratch_10_accuracy"]
    results = measured[0]["results"][max(measured[0]["results"])]
    if all("val_accuracy" in r for r in results.values()):
        best = best_on_validation(results, list(results))
        out.update(best_method_chosen=order.index(best), best_accuracy=results[best]["accuracy"],
                   best_val_accuracy=results[best]["val_accuracy"])
    return out


def save_draws(directory: Path, seed: int, draws: list[dict[str, Any]]) -> Path:
    path = Path(directory) / DRAWS_FILE
    path.write_text(json.dumps({"seed": seed, "draws": draws}, indent=1) + "\n")
    return path


def pool(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """The draws of the runs' `draws.json` files, in one list; refused in one line: a run without the file, a draw
    in two runs, or fewer than two draws in all."""
    seen: dict[int, Path] = {}
    draws = []
    for run_dir in map(Path, run_dirs):
        path = run_dir / DRAWS_FILE
        if not path.is_file():
            raise DataError(f"{run_dir}: no {DRAWS_FILE}; not a run of the Fashion-MNIST study (--task fashion)")
        for d in json.loads(path.read_text())["draws"]:
            if d["draw"] in seen:
                raise DataError(f"{path}: draw {d['draw']} is also in {seen[d['draw']]}; pool each draw once")
            seen[d["draw"]] = path
            draws.append({"draw": d["draw"], "results": {int(k): v for k, v in d["results"].items()}})
    if len(draws) < 2:
        raise DataError(f"{len(draws)} draw(s) in {len(run_dirs)} run(s): the paired t-interval needs at least 2 "
                        "(bench the full profile: 3 seeds of 5 draws)")
    return draws

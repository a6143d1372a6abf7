"""Repeated stratified k-fold cross-validation with one fold per run, and the paired test over the pooled folds.

stratified_folds  the fold of every example in one repeat: each class shuffled (seeded by the repeat) and dealt
                  round the k folds in turn, so the folds partition the data and each holds ~1/k of every class.
fold_split        (train, val, test) of the run with seed s: fold s % k of repeat s // k is the test part; the rest
                  is split, stratified and seeded, into training and validation (where every choice is made).
save_out_of_fold  a run's predictions of two models for each example of its test fold, as JSON.
aggregate         the runs' files pooled: out-of-fold errors of each model, the examples only one of them gets
                  right, the exact McNemar test per repeat (each example once in a repeat, so its pairs are
                  independent; across repeats they are not) and the mean macro-F1 over the folds.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import torch

from torch_cookbook.data.userdata import stratified_split
from torch_cookbook.errors import DataError
from torch_cookbook.nn.text import classification_metrics, paired_counts

OUT_OF_FOLD = "oof_{}.json"  # in the run directory, per dataset


def repeat_and_fold(seed: int, k: int) -> tuple[int, int]:
    """Which repeat and which of its k folds the run with `seed` holds out: seeds 0..k-1 are the first repeat."""
    return divmod(seed, k)


def stratified_folds(labels: np.ndarray, k: int, repeat: int) -> np.ndarray:
    """The fold (0..k-1) of each example in `repeat`. Each class is shuffled by its own generator, seeded by
    (repeat, class, k), and dealt out in turn, continuing where the previous class stopped: fold sizes differ by at
    most one and a class's counts by at most one, on any machine (no library's internal shuffling)."""
    folds = np.empty(len(labels), dtype=np.int64)
    dealt = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.random.default_rng([repeat, int(c), k]).permutation(len(idx))]
        folds[idx] = (dealt + np.arange(len(idx))) % k
        dealt += len(idx)
    return folds


def fold_split(labels: np.ndarray, k: int, seed: int,
               val_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices of the run with `seed`: its fold is the test part, and `val_fraction` of each
    class of the other folds (stratified, seeded by `seed`) is the validation part."""
    repeat, fold = repeat_and_fold(seed, k)
    folds = stratified_folds(labels, k, repeat)
    rest = np.flatnonzero(folds != fold)
    train, val, _ = stratified_split(labels[rest], seed, val_fraction, 0.0)
    return rest[train], rest[val], np.flatnonzero(folds == fold)


def save_out_of_fold(directory: Path, dataset: str, seed: int, k: int, classes: tuple[str, ...], index: torch.Tensor,
                     labels: torch.Tensor, predictions: dict[str, torch.Tensor], **about) -> Path:
    """Write `oof_<dataset>.json`: each test example's index in the dataset, true label and the prediction of each
    of the two models in `predictions` (first: the model under test, second: its baseline), plus `about`."""
    if len(predictions) != 2:
        raise ValueError(f"predictions: expected two models, got {list(predictions)}")
    repeat, fold = repeat_and_fold(seed, k)
    record = {"dataset": dataset, "folds": k, "repeat": repeat, "fold": fold, "seed": seed, "classes": list(classes),
              "pair": list(predictions), "index": index.tolist(), "label": labels.tolist(),
              "predictions": {name: p.tolist() for name, p in predictions.items()}, **about}
    path = Path(directory) / OUT_OF_FOLD.format(dataset)
    path.write_text(json.dumps(record) + "\n")
    return path


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs against a fair coin (binomial, p = 1/2)."""
    from scipy.stats import binomtest

    n = only_first + only_second
    return 1.0 if n == 0 else float(binomtest(only_first, n, 0.5).pvalue)


def _macro_f1(preds: list[int], labels: list[int], classes: int) -> float:
    return classification_metrics(torch.tensor(preds), torch.tensor(labels), classes)["macro_f1"]


def aggregate(run_dirs: list[Path]) -> dict[str, float]:
    """Pool the out-of-fold files of cross-validation runs (one fold each). For each dataset `ds` and the files'
    pair (a, b), e.g. (best_neural, tfidf):

    {ds}_cv_runs, {ds}_cv_predictions, {ds}_cv_repeats, {ds}_cv_repeats_complete (with all k folds)
    {ds}_cv_{a}_errors, {ds}_cv_{b}_errors, {ds}_cv_{a}_minus_{b}_errors   pooled out-of-fold errors
    {ds}_cv_{a}_only_right, {ds}_cv_{b}_only_right                          the discordant pairs, pooled
    {ds}_cv_mcnemar_p_repeat{r}, {ds}_cv_mcnemar_p_mean, {ds}_cv_mcnemar_p_max   exact McNemar, per repeat
    {ds}_cv_{a}_macro_f1_mean, {ds}_cv_{b}_macro_f1_mean, {ds}_cv_{a}_minus_{b}_macro_f1_mean   over the folds

    Refused in one line: a run without such a file, one fold twice, runs of different fold counts or classes."""
    by_dataset: dict[str, list[dict]] = {}
    for run_dir in map(Path, run_dirs):
        files = sorted(run_dir.glob(OUT_OF_FOLD.format("*")))
        if not files:
            raise DataError(f"{run_dir}: no {OUT_OF_FOLD.format('<dataset>')}; not a cross-validation run "
                            "(--cv_datasets)")
        for path in files:
            record = json.loads(path.read_text())
            record["path"] = path
            by_dataset.setdefault(record["dataset"], []).append(record)
    out: dict[str, float] = {}
    for ds, records in by_dataset.items():
        out.update(_pooled(ds, records))
    return out


def _pooled(ds: str, records: list[dict]) -> dict[str, float]:
    first = records[0]
    a, b = first["pair"]
    seen: dict[tuple[int, int], Path] = {}
    for r in records:
        if (r["folds"], r["classes"], r["pair"]) != (first["folds"], first["classes"], first["pair"]):
            raise DataError(f"{r['path']}: {r['folds']} folds, classes {r['classes']}, models {r['pair']}; "
                            f"{first['path']} has {first['folds']}, {first['classes']}, {first['pair']}: "
                            "pool runs of one protocol")
        if (r["repeat"], r["fold"]) in seen:
            raise DataError(f"{r['path']}: fold {r['fold']} of repeat {r['repeat']} is also in "
                            f"{seen[r['repeat'], r['fold']]}; pool each fold once")
        seen[r["repeat"], r["fold"]] = r["path"]
    counts = dict.fromkeys((f"{a}_errors", f"{b}_errors", f"{a}_only_right", f"{b}_only_right"), 0)
    repeats: dict[int, dict[str, int]] = {}  # each repeat's pairs, and how many of its folds ran
    f1: dict[str, list[float]] = {a: [], b: []}
    for r in records:
        labels = torch.tensor(r["label"])
        fold = paired_counts({m: torch.tensor(r["predictions"][m]) for m in (a, b)}, labels)
        repeat = repeats.setdefault(r["repeat"], {"only_a": 0, "only_b": 0, "folds": 0})
        repeat["only_a"] += fold[f"{a}_only_right"]
        repeat["only_b"] += fold[f"{b}_only_right"]
        repeat["folds"] += 1
        counts = {key: counts[key] + fold[key] for key in counts}
        for m in (a, b):
            f1[m].append(_macro_f1(r["predictions"][m], r["label"], len(r["classes"])))
    out = {f"{ds}_cv_runs": float(len(records)), f"{ds}_cv_predictions": float(sum(len(r["label"]) for r in records))}
    out.update({f"{ds}_cv_{key}": float(n) for key, n in counts.items()})
    out[f"{ds}_cv_{a}_minus_{b}_errors"] = out[f"{ds}_cv_{a}_errors"] - out[f"{ds}_cv_{b}_errors"]
    p_values = []
    for number, repeat in sorted(repeats.items()):
        p_values.append(mcnemar_exact(repeat["only_a"], repeat["only_b"]))
        out[f"{ds}_cv_mcnemar_p_repeat{number}"] = p_values[-1]
    out[f"{ds}_cv_repeats"] = float(len(repeats))
    out[f"{ds}_cv_repeats_complete"] = float(sum(repeat["folds"] == first["folds"] for repeat in repeats.values()))
    out[f"{ds}_cv_mcnemar_p_mean"] = statistics.fmean(p_values)
    out[f"{ds}_cv_mcnemar_p_max"] = max(p_values)
    for m in (a, b):
        out[f"{ds}_cv_{m}_macro_f1_mean"] = statistics.fmean(f1[m])
    out[f"{ds}_cv_{a}_minus_{b}_macro_f1_mean"] = statistics.fmean(x - y for x, y in zip(f1[a], f1[b]))
    return out

"""Small real regression data that ships with installed packages (nothing is downloaded).

- `diabetes`: scikit-learn's `load_diabetes(scaled=False)` (BSD-3; Efron et al., "Least Angle Regression",
  2004): 442 patients × 10 baseline variables in their original units (age in years, sex 1/2, BMI,
  blood pressure, six blood serum measurements) and a disease-progression score one year later.
  The raw units are used on purpose: they differ by two orders of magnitude, which is what makes
  input standardisation matter.
- `co2_trend`: statsmodels' `co2` (public domain; Mauna Loa weekly CO2 in ppm, 1958-2001), interpolated
  over its 59 missing weeks and averaged per month over 1960-1989: a smooth upward trend plus a yearly
  cycle, 360 points, for polynomial fitting.

Both loaders verify shape and a SHA-256 of the raw values, and return float64 arrays split by seed.
Standardisation (`Standardizer`) is fitted on the training split only, so nothing about the validation
or test data leaks into training.

Your own table (`read_user_table`, behind regression's and multitask's `--data`): a CSV/TSV/JSONL file (also
.gz/.bz2, streamed by `data.userdata`) with one or two target columns; every other column is a feature, numeric
when every value present is a finite number, otherwise categorical (one-hot over the training rows' categories).
Missing numeric values are filled with the training mean; what is refused is one `DataError` line naming the
file, the line and the column. docs/regression.md, "On your own data", has the rules.
"""

from __future__ import annotations

import array
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_cookbook.data import userdata
from torch_cookbook.errors import DataError

DIABETES_SHA256 = "e9c1f7559552854a24dc45b41c446ce5f79f96e5da081bcce24b57492720b3f7"
CO2_SHA256 = "ee5afa98318c2069baa753b7b8a327b96b0217017cf94aa8407e914d3cbfaa35"
DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


@dataclass
class Split:
    """float64 tensors: x (N, D) and y (N,) for train, validation and test."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


class Standardizer:
    """x -> (x - mean) / std with mean and std from the data it was fitted on (the training split). With `columns`
    (a bool mask) only those columns are scaled; the others pass through (one-hot inputs stay 0 or 1)."""

    def __init__(self, x: torch.Tensor, columns: torch.Tensor | None = None) -> None:
        self.mean = x.mean(0)
        std = x.std(0)
        self.std = torch.where(std > 0, std, torch.ones_like(std))  # a constant column is only centred
        if columns is not None:
            self.mean = torch.where(columns, self.mean, torch.zeros_like(self.mean))
            self.std = torch.where(columns, self.std, torch.ones_like(self.std))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean


def _check(name: str, arrays: list[np.ndarray], sha: str, shape: tuple) -> None:
    if arrays[0].shape != shape:
        raise DataError(f"{name}: expected shape {shape}, got {arrays[0].shape}; reinstall the package that ships it")
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a, dtype=np.float64).tobytes() for a in arrays))
    if digest.hexdigest() != sha:
        raise DataError(f"{name}: the shipped data fails its checksum; reinstall the package that ships it")


def split_indices(n: int, seed: int, val_fraction: float, test_fraction: float) -> tuple[torch.Tensor, ...]:
    """A random train/val/test partition of range(n), fixed by `seed`."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def _split(x: np.ndarray, y: np.ndarray, seed: int, val_fraction: float, test_fraction: float) -> Split:
    xt, yt = torch.tensor(np.asarray(x), dtype=torch.float64), torch.tensor(np.asarray(y), dtype=torch.float64)
    train, val, test = split_indices(len(yt), seed, val_fraction, test_fraction)
    return Split(xt[train], yt[train], xt[val], yt[val], xt[test], yt[test])


def diabetes(seed: int, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Split:
    """The diabetes data in original units, split at random by `seed` (default 60/20/20)."""
    try:
        from sklearn.datasets import load_diabetes
    except ImportError as e:
        raise DataError(f"the diabetes data ships with scikit-learn, which is not installed ({e})") from None
    bunch = load_diabetes(scaled=False)
    _check("diabetes", [bunch.data, bunch.target], DIABETES_SHA256, (442, 10))
    return _split(bunch.data, bunch.target, seed, val_fraction, test_fraction)


def co2_series() -> tuple[np.ndarray, np.ndarray]:
    """Monthly mean CO2 (ppm) 1960-1989 and its time in decimal years (both float64, 360 points)."""
    try:
        import statsmodels.api as sm
    except ImportError as e:
        raise DataError(f"the co2 data ships with statsmodels, which is not installed ({e})") from None
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    _check("co2", [weekly.to_numpy()], CO2_SHA256, (2284,))
    monthly = weekly.interpolate().resample("MS").mean().loc["1960":"1989"]
    years = monthly.index.year.to_numpy() + (monthly.index.month.to_numpy() - 1) / 12.0
    return years.astype(np.float64), monthly.to_numpy(dtype=np.float64)


def co2_trend(seed: int, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Split:
    """The co2 segment as (time → ppm) pairs, split at random by `seed`; x has shape (360, 1)."""
    years, ppm = co2_series()
    return _split(years[:, None], ppm, seed, val_fraction, test_fraction)


def polynomial_features(t: torch.Tensor, degree: int) -> torch.Tensor:
    """(N,) → (N, degree): t, t², ..., t^degree (t should already be standardised to keep powers small)."""
    return torch.stack([t ** k for k in range(1, degree + 1)], dim=1)


def regression_metrics(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    err = pred - y
    mse = err.pow(2).mean().item()
    return {"mse": mse, "mae": err.abs().mean().item(), "r2": 1.0 - mse / (y - y.mean()).pow(2).mean().item()}


def mean_baseline(y_train: torch.Tensor, y_test: torch.Tensor) -> dict[str, float]:
    """The naive prediction, the training mean for every row, scored on `y_test`."""
    return regression_metrics(torch.full_like(y_test, y_train.mean().item()), y_test)


# ---- your own table: one reader for regression and multitask ----------------------------------------------
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})  # a missing value (stripped, any case)
NUMBER, CLASS = "number", "class"  # the two kinds of target
MIN_ROWS, MIN_TRAIN_ROWS = 10, 5


def column_list(text: str) -> tuple[str, ...]:
    """'a, b,c' -> ('a', 'b', 'c'): how --target, --features and --drop name columns."""
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


@dataclass
class Encoding:
    """How a row of feature values becomes numbers, fitted on the training rows: a numeric column as it is (a
    missing value becomes its training mean), a categorical column one-hot over the categories its training rows
    show, sorted (a missing or unseen value becomes all zeros). Columns keep the file's order."""

    columns: tuple[str, ...]
    means: dict[str, float]  # numeric column -> its training mean, the fill value
    categories: dict[str, tuple[str, ...]]  # categorical column -> its training categories

    @classmethod
    def all_numeric(cls, columns: Sequence[str], x_train: torch.Tensor) -> Encoding:
        return cls(tuple(columns), dict(zip(columns, x_train.mean(0).tolist())), {})

    def width_of(self, column: str) -> int:
        return 1 if column in self.means else len(self.categories[column])

    def numeric_mask(self) -> torch.Tensor:
        return torch.tensor([c in self.means for c in self.columns for _ in range(self.width_of(c))])

    def parse(self, values: Mapping[str, str], where: str) -> tuple[list[float], list[int]]:
        """One row's numeric values (NaN: missing) and category codes (-1: missing or not a known category). A value
        that is not a number in a numeric column is refused."""
        numbers = []
        for column in self.means:
            value = values[column].strip()
            x = math.nan if value.lower() in MISSING else _number(value)
            if x is None:
                raise DataError(f"{where}: column '{column}' is {value!r}, not a number; it is numeric in this data"
                                f" (leave it empty for a missing value)")
            numbers.append(x)
        lookup = {c: {v: i for i, v in enumerate(cats)} for c, cats in self.categories.items()}
        return numbers, [lookup[c].get(values[c].strip(), -1) for c in self.categories]

    def transform(self, numbers: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, int]:
        """(rows, inputs) float64 from `parse`'s values, and how many missing numeric values were filled."""
        numbers = np.asarray(numbers, dtype=np.float64).reshape(len(codes), len(self.means))
        codes = np.asarray(codes, dtype=np.int64).reshape(len(numbers), len(self.categories))
        missing = np.isnan(numbers)
        numbers = np.where(missing, np.array(list(self.means.values())), numbers)
        out, j, rows = np.zeros((len(numbers), sum(map(self.width_of, self.columns)))), 0, np.arange(len(numbers))
        for column in self.columns:
            if column in self.means:
                out[:, j] = numbers[:, list(self.means).index(column)]
            else:
                code = codes[:, list(self.categories).index(column)]
                out[rows[code >= 0], j + code[code >= 0]] = 1.0
            j += self.width_of(column)
        return out, int(missing.sum())


# ---- prepared for training: standardisers fitted on the training split only -------------------------------
@dataclass
class Prepared:
    """A split with x_scale for the inputs and y_scale for the target, both fitted on its training split only;
    `encoding` turns a row of feature values into an input row (predict), `name` and `target` label the plots."""

    split: Split
    x_scale: Standardizer
    y_scale: Standardizer
    encoding: Encoding | None = None
    name: str = "Diabetes"
    target: str = "progression score"
    info: dict[str, int] = field(default_factory=dict)  # rows per split, features, filled values (your own data)

    def inputs(self, which: str, standardise: bool = True) -> torch.Tensor:
        return self.scaled(getattr(self.split, f"x_{which}"), standardise)

    def scaled(self, x: torch.Tensor, standardise: bool = True) -> torch.Tensor:
        return self.x_scale(x) if standardise else x

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, x: torch.Tensor, standardise: bool = True) -> torch.Tensor:
        """A model's predictions for inputs `x` (in their own units), in the target's units (float64): the inputs are
        cast to the model's precision, its outputs back to float64."""
        dtype = next(model.parameters()).dtype
        return self.y_scale.inverse(model.eval()(self.scaled(x, standardise).to(dtype)).squeeze(1).double())


@torch.no_grad()
def polynomial_predict(model: torch.nn.Module, data: Prepared, which: str, degree: int) -> torch.Tensor:
    """A polynomial model's predictions on split `which` of a one-input data set (the CO2 trend), in its units."""
    return data.y_scale.inverse(model(polynomial_features(data.inputs(which)[:, 0], degree)).squeeze(1))


def polynomial_metrics(model: torch.nn.Module, data: Prepared, degree: int) -> dict[str, float]:
    out = {}
    for which in ("val", "test"):
        m = regression_metrics(polynomial_predict(model, data, which, degree), getattr(data.split, f"y_{which}"))
        out.update({f"{which}_{k}": v for k, v in m.items()})
    return out


def polynomial_closed_form(data: Prepared, degree: int) -> dict[str, float]:
    """numpy's least-squares polynomial of the degree on the same standardised time axis, scored on test."""
    t_train, t_test = data.inputs("train")[:, 0].numpy(), data.inputs("test")[:, 0].numpy()
    poly = np.polynomial.Polynomial.fit(t_train, data.split.y_train.numpy(), degree)
    m = regression_metrics(torch.from_numpy(poly(t_test)), data.split.y_test)
    return {f"poly_closed_form_test_{k}": v for k, v in m.items()}


def prepare(split: Split, encoding: Encoding | None = None, **labels: Any) -> Prepared:
    """Only the numeric columns are standardised: one-hot columns stay 0/1, so an unseen category stays all-zero."""
    numeric = encoding.numeric_mask() if encoding is not None else None
    return Prepared(split, Standardizer(split.x_train, numeric), Standardizer(split.y_train), encoding, **labels)


@dataclass
class UserTable:
    """A user's table, encoded: x (rows, inputs) float64 with numeric columns in their own units (not yet
    standardised), each target (a number: float64; a class: int64 index into `classes[column]`), the line each
    row starts on, and the (train, val, test) row indices."""

    source: Path
    encoding: Encoding
    x: np.ndarray
    targets: dict[str, np.ndarray]
    classes: dict[str, tuple[str, ...]]
    lines: np.ndarray
    parts: tuple[np.ndarray, np.ndarray, np.ndarray]
    filled: int  # missing numeric values filled with the training mean, in all splits

    def scaler(self) -> Standardizer:
        """Standardises the numeric inputs with the training rows' statistics; one-hot inputs stay 0 or 1."""
        return Standardizer(torch.from_numpy(self.x[self.parts[0]]), self.encoding.numeric_mask())

    def info(self) -> dict[str, int]:
        return {**{f"data_rows_{s}": len(p) for s, p in zip(userdata.SPLITS, self.parts)},
                "data_inputs": self.x.shape[1], "data_filled_values": self.filled}


def choose_features(path: Path, header: Sequence[str], targets: Sequence[str], features: Sequence[str] = (),
                    drop: Sequence[str] = ()) -> tuple[str, ...]:
    """The feature columns: `features` if given, otherwise every column but the targets and `split`; less `drop`."""
    if not all(targets):
        raise DataError(f"{path}: --data needs --target; the columns: {', '.join(header)}")
    for flag, names in (("target", targets), ("features", features), ("drop", drop)):
        for name in names:
            if name not in header:
                raise DataError(f"{path} line 1: no column '{name}' (--{flag}); it has: {', '.join(header) or 'none'}")
    for name in features:
        if name in targets or name == userdata.SPLIT_COLUMN:
            what = "a --target" if name in targets else "the split column"
            raise DataError(f"{path}: column '{name}' is {what}; it cannot also be a feature (--features)")
    chosen = [c for c in (features or header) if c not in (*targets, userdata.SPLIT_COLUMN, *drop)]
    if not chosen:
        raise DataError(f"{path}: no feature columns left (columns: {', '.join(header)}; --target {','.join(targets)};"
                        f" --drop {','.join(drop) or 'none'})")
    return tuple(dict.fromkeys(chosen))


def read_user_table(path: str | Path, targets: Mapping[str, str], features: Sequence[str] = (),
                    drop: Sequence[str] = (), seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2,
                    max_categories: int = 50) -> UserTable:
    """Read, split and encode a CSV/TSV/JSONL table. `targets` maps each target column to NUMBER or CLASS; a class
    target stratifies the seeded split. Two streamed passes: the first learns each column's kind (numeric when every
    value present is a finite number) and its values, the second fills the arrays. See docs/regression.md."""
    path = Path(path)
    header = userdata.table_columns(path)
    columns = choose_features(path, header, tuple(targets), features, drop)
    optional = (*targets, *columns, userdata.SPLIT_COLUMN)
    # Per row only numbers are kept (line, split, targets; a class as the code of its first appearance): this pass
    # holds 9 bytes per row and 8 per target, whatever the width of the file.
    lines, splits = array.array("q"), array.array("b")
    found = {c: array.array("q" if kind == CLASS else "d") for c, kind in targets.items()}
    first_seen: dict[str, dict[str, int]] = {c: {} for c, kind in targets.items() if kind == CLASS}
    numeric = dict.fromkeys(columns, True)
    first_text: dict[str, tuple[str, int]] = {}  # column -> its first non-numeric value and line
    distinct: dict[str, set[str] | None] = {c: set() for c in columns}  # None: more than max_categories
    for row in userdata.read_table(path, {}, optional=optional):
        lines.append(row.line)
        if userdata.SPLIT_COLUMN in row.values:
            splits.append(userdata.split_code(path, row))
        for column, kind in targets.items():
            value = _target(path, row, column, kind)
            found[column].append(first_seen[column].setdefault(value, len(first_seen[column])) if kind == CLASS
                                 else value)
        for column in columns:
            value = row.values[column].strip()
            if value.lower() in MISSING:
                continue
            if numeric[column] and _number(value) is None:
                numeric[column], first_text[column] = False, (value, row.line)
            seen = distinct[column]
            if seen is not None:
                seen.add(value)
                if len(seen) > max_categories:
                    distinct[column] = None
    n = len(lines)
    if n < MIN_ROWS:
        raise DataError(f"{path}: {n} rows; at least {MIN_ROWS} are needed to split them for training and testing")
    for column in columns:
        if not numeric[column] and distinct[column] is None:
            value, line = first_text[column]
            raise DataError(f"{path} line {line}: column '{column}' is {value!r}, not a number, so it would be one-hot"
                            f" encoded, and it has over {max_categories} distinct values (--max_categories); leave it"
                            f" out with --drop {column}, or fix the value if the column is numeric")
    classes = {c: tuple(sorted(seen)) for c, seen in first_seen.items()}  # numbered by name, not by row order
    values = {c: np.array(found[c]) for c in targets}
    for c, seen in first_seen.items():
        values[c] = np.array([classes[c].index(name) for name in seen], dtype=np.int64)[values[c]]
    for column, names in classes.items():
        if len(names) < 2:
            raise DataError(f"{path}: column '{column}' (--target) has one class ({names[0]!r}, {n} rows); a"
                            f" classifier needs two or more")
    label = next(iter(classes), None)
    parts = split_rows(path, n, np.array(splits) if splits else None, values.get(label), seed, val_fraction,
                       test_fraction)
    if label is not None:
        check_classes(path, label, classes[label], values[label], parts, np.array(lines))
    # Second pass: the numbers, and each category's code among the values the whole file shows.
    kinds = Encoding(columns, {c: 0.0 for c in columns if numeric[c]},
                     {c: tuple(sorted(distinct[c])) for c in columns if not numeric[c]})
    numbers, codes = np.full((n, len(kinds.means)), np.nan), np.full((n, len(kinds.categories)), -1)
    for i, row in enumerate(userdata.read_table(path, {}, optional=optional)):
        if i == n:
            raise DataError(f"{path}: changed while it was read; read it again")
        numbers[i], codes[i] = kinds.parse(row.values, f"{path} line {row.line}")
    encoding = fit_encoding(path, kinds, numbers, codes, parts[0])
    for j, column in enumerate(encoding.categories):  # re-code against the training categories; unseen -> -1
        recode = np.array([encoding.categories[column].index(v) if v in encoding.categories[column] else -1
                           for v in kinds.categories[column]] + [-1])
        codes[:, j] = recode[codes[:, j]]
    x, filled = encoding.transform(numbers, codes)
    for column in targets:
        check_target(path, column, targets[column], values[column][parts[0]])
    return UserTable(path, encoding, x, values, classes, np.array(lines), parts, filled)


def _target(path: Path, row: userdata.Row, column: str, kind: str) -> str | float:
    value = row.values[column].strip()
    if value.lower() in MISSING:
        raise DataError(f"{path} line {row.line}: column '{column}' (--target) is missing ({value!r}); every row needs"
                        f" its target: fill it in or leave the row out")
    if kind == CLASS:
        return value
    x = _number(value)
    if x is None:
        raise DataError(f"{path} line {row.line}: column '{column}' (--target) is {value!r}, not a number; this"
                        f" target must be numeric")
    return x


def fit_encoding(path: Path, kinds: Encoding, numbers: np.ndarray, codes: np.ndarray, train: np.ndarray) -> Encoding:
    """The training means of the numeric columns and the categories the training rows show."""
    means, categories = {}, {}
    for j, column in enumerate(kinds.means):
        present = numbers[train, j][~np.isnan(numbers[train, j])]
        if len(present) == 0:
            raise DataError(f"{path}: column '{column}' has no values in the training split; leave it out with"
                            f" --drop {column}")
        means[column] = float(present.mean())
    for j, column in enumerate(kinds.categories):
        seen = np.unique(codes[train, j])
        if not (seen >= 0).any():
            raise DataError(f"{path}: column '{column}' has no values in the training split; leave it out with"
                            f" --drop {column}")
        categories[column] = tuple(kinds.categories[column][k] for k in seen[seen >= 0])
    return Encoding(kinds.columns, means, categories)


def check_target(path: Path, column: str, kind: str, train_values: np.ndarray) -> None:
    if kind == NUMBER and np.ptp(train_values) == 0:
        raise DataError(f"{path}: column '{column}' (--target) is {train_values[0]:g} on every training row; there is"
                        f" nothing to learn")


def split_rows(path: Path, n: int, split: np.ndarray | None, labels: np.ndarray | None, seed: int,
               val_fraction: float, test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) row indices: the `split` column's if the table has one (without val rows, `val_fraction`
    of the train rows is held out), otherwise seeded: stratified by `labels` if given, else at random. With
    `val_fraction` 0 there is no validation split."""

    def seeded(rows: np.ndarray, val: float, test: float) -> tuple[np.ndarray, ...]:
        if labels is not None:
            return tuple(rows[p] for p in userdata.stratified_split(labels[rows], seed, val, test))
        return tuple(rows[p.numpy()] for p in split_indices(len(rows), seed, val, test))

    if split is None:
        parts, where = seeded(np.arange(n), val_fraction, test_fraction), "the split (--val_fraction, --test_fraction)"
    else:
        parts, where = tuple(np.flatnonzero(split == code) for code in range(3)), f"column '{userdata.SPLIT_COLUMN}'"
        if val_fraction == 0:
            parts = (parts[0], parts[1][:0], parts[2])  # a recipe without validation leaves the val rows out
        elif len(parts[1]) == 0:
            train, val, _ = seeded(parts[0], val_fraction, 0.0)
            parts = (train, val, parts[2])
    needed = [("train", parts[0]), ("test", parts[2])] + ([("val", parts[1])] if val_fraction > 0 else [])
    for name, rows in needed:
        if len(rows) < (MIN_TRAIN_ROWS if name == "train" else 1):
            raise DataError(f"{path}: {where} leaves {len(rows)} {name} rows ({n} rows in all); train needs at least"
                            f" {MIN_TRAIN_ROWS}, validation and test one each")
    return parts  # type: ignore[return-value]


def check_classes(path: Path, column: str, names: tuple[str, ...], labels: np.ndarray,
                  parts: tuple[np.ndarray, ...], lines: np.ndarray) -> None:
    """A class in the validation or test split that training never shows is refused: no model can predict it."""
    seen = set(labels[parts[0]].tolist())
    for name, rows in zip(userdata.SPLITS[1:], parts[1:]):
        unseen = [i for i in rows if labels[i] not in seen]
        if unseen:
            i = min(unseen)
            raise DataError(f"{path} line {lines[i]}: class {names[labels[i]]!r} (column '{column}', --target) is in"
                            f" the {name} split but not in train; give it train rows or leave it out")


# ---- rows to predict ------------------------------------------------------------------------------------------
def rows_to_predict(encoding: Encoding, pairs: Sequence[str], rows: str | None) -> tuple[list[str], torch.Tensor]:
    """`predict`'s input: COLUMN=VALUE pairs for one row, or every row of a CSV/TSV/JSONL file (`rows`); every
    feature must be there (COLUMN= for a missing value, filled as in training). Returns where each row came from
    (with a note for each value not seen in training, encoded as all zeros) and the rows, encoded, in float64."""
    if bool(pairs) == bool(rows):
        raise DataError("give one row as COLUMN=VALUE pairs, or a file of rows with --rows FILE (not both);"
                        f" the features: {', '.join(encoding.columns)}")
    if rows:
        missing = [c for c in encoding.columns if c not in userdata.table_columns(rows)]
        if missing:
            raise DataError(f"{rows} line 1: no column '{missing[0]}'; the run's features:"
                            f" {', '.join(encoding.columns)}")
        table = [(f"{rows} line {r.line}", r.values) for r in userdata.read_table(rows, {}, optional=encoding.columns)]
    else:
        values = {}
        for pair in pairs:
            column, sep, value = pair.partition("=")
            if not sep or column.strip() not in encoding.columns:
                shown = pair if len(pair) <= 60 else pair[:57] + "..."
                raise DataError(f"{shown!r}: expected COLUMN=VALUE with COLUMN one of the run's features:"
                                f" {', '.join(encoding.columns)}")
            values[column.strip()] = value
        missing = [c for c in encoding.columns if c not in values]
        if missing:
            raise DataError(f"no value for {', '.join(missing)}: give COLUMN=VALUE for every feature (COLUMN= for a"
                            f" missing value, filled as in training)")
        table = [("row", values)]
    where, numbers, codes = [], [], []
    for place, values in table:
        row_numbers, row_codes = encoding.parse(values, place)
        unseen = [f"{c} {values[c].strip()!r} not seen in training: all zeros" for c, code in
                  zip(encoding.categories, row_codes) if code < 0 and values[c].strip().lower() not in MISSING]
        where.append(f"{place} ({'; '.join(unseen)})" if unseen else place)
        numbers.append(row_numbers)
        codes.append(row_codes)
    return where, torch.from_numpy(encoding.transform(np.array(numbers), np.array(codes))[0])


def regression_data(path: str, target: str, features: str = "", drop: str = "", seed: int = 0,
                    val_fraction: float = 0.2, test_fraction: float = 0.2, max_categories: int = 50) -> Prepared:
    """regression's data: diabetes when `path` is empty, otherwise the user's table with `target` to predict
    (`features` and `drop` name columns, comma-separated), split at random by `seed`."""
    if not path:
        split = diabetes(seed, val_fraction, test_fraction)
        return prepare(split, Encoding.all_numeric(DIABETES_FEATURES, split.x_train), name="Diabetes")
    t = read_user_table(path, {target: NUMBER}, column_list(features), column_list(drop), seed, val_fraction,
                        test_fraction, max_categories)
    x, y = torch.from_numpy(t.x), torch.from_numpy(t.targets[target].astype(np.float64))
    train, val, test = (torch.from_numpy(p) for p in t.parts)
    split = Split(x[train], y[train], x[val], y[val], x[test], y[test])
    return prepare(split, t.encoding, name=Path(path).name, target=target, info=t.info())

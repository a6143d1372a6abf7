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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

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
    """x -> (x - mean) / std with mean and std from the data it was fitted on (the training split)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.mean = x.mean(0)
        self.std = x.std(0).clamp_min(1e-12)  # a constant column stays finite

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

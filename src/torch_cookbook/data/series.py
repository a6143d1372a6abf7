"""Offline time series, chronological splits, sliding windows, rolling-origin forecasts and their baselines.

co2      Weekly CO2 at Mauna Loa, 1958-03 .. 2001-12 (NOAA/Scripps, public domain), shipped with statsmodels
         (`sm.datasets.co2`). Averaged to calendar months; 5 months have no weekly value at all. They are filled
         honestly: deseasonalise with each calendar month's mean deviation from a centred 12-month mean, interpolate
         linearly, add the month's deviation back. `filled` marks them; none falls in validation or test.
seattle  Hourly Seattle temperature normals for 2010 (NOAA), `vega_datasets.local_data.seattle_temps()` (ships
         locally). One hour is missing (a 2-hour step, the spring daylight-saving jump): filled by linear
         interpolation and marked in `filled`.

Everything is chronological: train < validation < test, no shuffling across time. A forecast from origin t uses
y[0..t] only; rolling-origin evaluation makes one forecast of `horizon` steps from every origin whose targets
lie inside the evaluated split. `prepare` gives a series with the window a forecaster reads and the scales
it needs (`Prepared`); `baselines` scores naive, seasonal naive and Holt-Winters on its test origins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from torch_cookbook.errors import DataError

SERIES = ("co2", "seattle")


@dataclass
class Series:
    name: str
    values: np.ndarray  # float64 (N,)
    times: np.ndarray  # datetime64 (N,)
    filled: np.ndarray  # bool (N,): True where the value was filled in, not observed
    season: int  # period of the seasonality in steps
    horizon: int  # steps ahead to forecast
    val_len: int  # steps in the validation split (just before the test split)
    test_len: int  # steps in the test split (the end of the series)
    unit: str

    @property
    def test_start(self) -> int:
        return len(self.values) - self.test_len

    @property
    def val_start(self) -> int:
        return self.test_start - self.val_len

    def digest(self) -> str:
        return hashlib.sha256(self.values.tobytes()).hexdigest()


def load_co2() -> Series:
    import statsmodels.api as sm

    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean()  # months with no weekly value become NaN
    values = fill_seasonal_gaps(monthly.to_numpy(dtype=np.float64), monthly.index.month.to_numpy() - 1, 12)
    if len(values) != 526:
        raise DataError(f"statsmodels co2: expected 526 months 1958-03..2001-12, found {len(values)}")
    return Series("co2", values, monthly.index.to_numpy(), monthly.isna().to_numpy(), season=12, horizon=12,
                  val_len=48, test_len=48, unit="ppm")


def load_seattle() -> Series:
    import pandas as pd
    from vega_datasets import local_data

    raw = local_data.seattle_temps().set_index("date")["temp"]
    hourly = raw.reindex(pd.date_range(raw.index[0], raw.index[-1], freq="h"))
    if len(hourly) != 8760:
        raise DataError(f"vega_datasets seattle_temps: expected 8,760 hours of 2010, found {len(hourly)}")
    filled = hourly.isna().to_numpy()
    values = hourly.interpolate("linear").to_numpy(dtype=np.float64)
    return Series("seattle", values, hourly.index.to_numpy(), filled, season=24, horizon=24,
                  val_len=14 * 24, test_len=8 * 7 * 24, unit="°F")


def load(name: str) -> Series:
    if name not in SERIES:
        raise DataError(f"unknown series {name!r}; known: {', '.join(SERIES)}")
    return load_co2() if name == "co2" else load_seattle()


def fill_seasonal_gaps(y: np.ndarray, phase: np.ndarray, season: int) -> np.ndarray:
    """Fill NaNs: remove each phase's mean deviation from a centred moving average, interpolate, add it back.

    Linear interpolation alone would cut straight through the seasonal cycle (3 missing months in 1964 span
    a 3 ppm seasonal swing); this keeps the cycle and interpolates only the slowly varying level.
    """
    import pandas as pd

    s = pd.Series(y)
    trend = s.rolling(season + 1, center=True, min_periods=season // 2).mean()
    deviation = (s - trend).groupby(phase).mean()
    seasonal = deviation.reindex(phase).to_numpy()
    deseasonalised = pd.Series(y - seasonal).interpolate("linear", limit_direction="both").to_numpy()
    return np.where(np.isnan(y), deseasonalised + seasonal, y)


def fill_nan(values: np.ndarray) -> np.ndarray:
    """Linear interpolation of interior NaNs (documented fill for user input); NaN at either end is an error."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if bad[0] or bad[-1]:
        raise DataError("the series starts or ends with a missing value (NaN/inf); only interior gaps are filled")
    idx = np.arange(len(values))
    return np.where(bad, np.interp(idx, idx[~bad], values[~bad]), values)


# ---- windows and origins ---------------------------------------------------------------------------------
def origins(first_target: int, end: int, horizon: int, window: int) -> np.ndarray:
    """Forecast origins t (index of the last observed value) whose targets t+1..t+horizon lie in [first_target, end)."""
    start = max(first_target - 1, window - 1)
    return np.arange(start, end - horizon)


def windows(values: np.ndarray, at: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs y[t-window+1..t] (O, window) and targets y[t+1..t+horizon] (O, horizon) for origins `at`."""
    inputs = np.stack([values[t - window + 1:t + 1] for t in at])
    targets = np.stack([values[t + 1:t + 1 + horizon] for t in at])
    return inputs, targets


def seasonal_base(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Seasonal-naive forecasts from the rows of `history` (O, W), W >= season: y[t+k-season*ceil(k/season)]."""
    k = np.arange(1, horizon + 1)
    back = season * np.ceil(k / season).astype(int) - k  # steps back from t: 11, 10, ..., 0 for k=1..12, m=12
    return history[:, history.shape[1] - 1 - back]


# ---- a series prepared for a forecaster --------------------------------------------------------------------
@dataclass
class Prepared:
    """A series with its splits, the window a forecaster reads, and the scales of its inputs and errors."""

    s: Series
    window: int
    sigma: float  # input scale: std of one-step changes on the training split only
    scale: float  # MASE denominator: in-sample seasonal-naive MAE on the training split

    @property
    def history(self) -> int:
        """Values each forecast reads: the window plus one season before it (for seasonal differences)."""
        return self.window + self.s.season

    def origins(self, split: str, horizon: int | None = None) -> np.ndarray:
        """The origins whose `horizon` (default: the series') targets lie in `split` (train, val or test)."""
        h = horizon or self.s.horizon
        n, s = len(self.s.values), self.s
        first, end = {"train": (0, s.val_start), "val": (s.val_start, s.test_start), "test": (s.test_start, n)}[split]
        return origins(first, end, h, self.history)

    def hist(self, at: np.ndarray) -> torch.Tensor:
        """The `history` values up to each origin in `at`: (O, history) float32."""
        inputs, _ = windows(self.s.values, at, self.history, 1)
        return torch.from_numpy(inputs).float()

    def targets(self, at: np.ndarray, horizon: int) -> torch.Tensor:
        """The `horizon` values after each origin in `at`: (O, horizon) float32."""
        _, out = windows(self.s.values, at, 1, horizon)
        return torch.from_numpy(out).float()


def prepare(name: str, window_seasons: int) -> Prepared:
    """Series `name` with an input window of `window_seasons` seasons, scaled by its training split alone."""
    s = load(name)
    train = s.values[:s.val_start]
    return Prepared(s, window_seasons * s.season, float(np.std(np.diff(train))), mase_scale(train, s.season))


def val_origins(p: Prepared, max_origins: int) -> np.ndarray:
    """The validation origins, thinned to at most `max_origins` evenly spaced ones (0 = all)."""
    at = p.origins("val")
    if max_origins and len(at) > max_origins:
        at = at[np.linspace(0, len(at) - 1, max_origins).round().astype(int)]
    return at


# ---- baselines --------------------------------------------------------------------------------------------
def naive_forecast(values: np.ndarray, at: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(values[at][:, None], horizon, axis=1)


def seasonal_naive_forecast(values: np.ndarray, at: np.ndarray, horizon: int, season: int) -> np.ndarray:
    hist, _ = windows(values, at, season, horizon)
    return seasonal_base(hist, horizon, season)


@dataclass
class ETSFit:
    """Holt-Winters additive trend (optionally damped) + additive season, parameters estimated once."""

    params: dict
    damped: bool
    season: int


def fit_ets(values: np.ndarray, season: int, damped: bool) -> ETSFit:
    """Estimate Holt-Winters parameters (statsmodels) on `values`, the data before the evaluated split."""
    import warnings

    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; the fit is checked by its forecasts
        res = ExponentialSmoothing(values, trend="add", damped_trend=damped, seasonal="add",
                                   seasonal_periods=season, initialization_method="estimated").fit()
    return ETSFit(dict(res.params), damped, season)


def ets_forecast(fit: ETSFit, values: np.ndarray, at: np.ndarray, horizon: int) -> np.ndarray:
    """Forecasts from every origin in `at` with the fitted parameters held fixed (no refit per origin).

    statsmodels filters the whole series once with the fixed parameters; the level, trend and season states
    at origin t depend only on y[0..t], so the h-step forecast from t is l_t + (phi + ... + phi^k) b_t + s_{t+k-m}.
    """
    import warnings

    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    p, m = fit.params, fit.season
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ExponentialSmoothing(values, trend="add", damped_trend=fit.damped, seasonal="add", seasonal_periods=m,
                                     initialization_method="known", initial_level=p["initial_level"],
                                     initial_trend=p["initial_trend"], initial_seasonal=p["initial_seasons"])
        res = model.fit(smoothing_level=p["smoothing_level"], smoothing_trend=p["smoothing_trend"],
                        smoothing_seasonal=p["smoothing_seasonal"],
                        damping_trend=p["damping_trend"] if fit.damped else None, optimized=False)
    level, trend, season = np.asarray(res.level), np.asarray(res.trend), np.asarray(res.season)
    phi = p["damping_trend"] if fit.damped else 1.0
    k = np.arange(1, horizon + 1)
    damp = np.cumsum(phi ** k)
    back = m * np.ceil(k / m).astype(int) - k
    return level[at][:, None] + damp[None, :] * trend[at][:, None] + season[at[:, None] - back[None, :]]


# ---- metrics ----------------------------------------------------------------------------------------------
def mase_scale(train: np.ndarray, season: int) -> float:
    """In-sample MAE of the one-step seasonal-naive forecast on the training split: MASE's denominator."""
    return float(np.mean(np.abs(train[season:] - train[:-season])))


def forecast_metrics(pred: np.ndarray, actual: np.ndarray, scale: float) -> dict[str, float]:
    """MAE, RMSE and MASE over every origin and every step of the horizon."""
    err = pred - actual
    mae = float(np.mean(np.abs(err)))
    return {"mae": mae, "rmse": float(np.sqrt(np.mean(err ** 2))), "mase": mae / scale}


def baselines(p: Prepared) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Naive, seasonal naive and Holt-Winters on the test origins: (metrics, forecasts) by name.

    Holt-Winters' damped-or-not is chosen on validation (parameters fit on train), then its parameters are
    re-estimated on train+validation and held fixed through the test period.
    """
    s, y = p.s, p.s.values
    at = p.origins("test")
    actual = p.targets(at, s.horizon).double().numpy()
    val_at = p.origins("val")
    val_actual = p.targets(val_at, s.horizon).double().numpy()
    val_mae = {}
    for damped in (False, True):
        fit = fit_ets(y[:s.val_start], s.season, damped)
        val_mae[damped] = float(np.mean(np.abs(ets_forecast(fit, y, val_at, s.horizon) - val_actual)))
    damped = val_mae[True] < val_mae[False]
    preds = {"naive": naive_forecast(y, at, s.horizon),
             "snaive": seasonal_naive_forecast(y, at, s.horizon, s.season),
             "ets": ets_forecast(fit_ets(y[:s.test_start], s.season, damped), y, at, s.horizon)}
    metrics = {name: forecast_metrics(pred, actual, p.scale) for name, pred in preds.items()}
    metrics["ets"]["damped"] = float(damped)
    return metrics, preds

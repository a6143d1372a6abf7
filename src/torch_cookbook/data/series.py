"""Offline time series, chronological splits, sliding windows, rolling-origin forecasts and their baselines.

co2      Weekly CO2 at Mauna Loa, 1958-03 .. 2001-12 (NOAA/Scripps, public domain), shipped with statsmodels
         (`sm.datasets.co2`). Averaged to calendar months; 5 months have no weekly value at all. They are filled
         honestly: deseasonalise with each calendar month's mean deviation from a centred 12-month mean, interpolate
         linearly, add the month's deviation back. `filled` marks them; none falls in validation or test.
seattle  Hourly Seattle temperature normals for 2010 (NOAA), `vega_datasets.local_data.seattle_temps()` (ships
         locally). One hour is missing (a 2-hour step, the spring daylight-saving jump): filled by linear
         interpolation and marked in `filled`.
user     Your own series (`UserSeries`, `load_user`): a CSV/TSV/JSONL file with a time and a value column, read
         through data/userdata.py. The rows must be sorted with one value per time; the frequency is --freq or
         inferred; missing times and missing values (empty, NaN) are filled by linear interpolation, at most
         `max_gap` steps in a row; the last `test_fraction` of the steps is the test split, the `val_fraction`
         before it validation. The whole series is held in memory (24 bytes a row while reading).

Everything is chronological: train < validation < test, no shuffling across time. A forecast from origin t uses
y[0..t] only; rolling-origin evaluation makes one forecast of `horizon` steps from every origin whose targets
lie inside the evaluated split. `prepare` gives a series with the window a forecaster reads and the scales
it needs (`Prepared`); `baselines` scores naive, seasonal naive and Holt-Winters on its test origins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import torch

from torch_cookbook.errors import ConfigError, DataError

SERIES = ("co2", "seattle")
USER = "user"  # the name of a user's --data in a run: user_* metrics, variants and plot
MISSING = {"", "nan", "na", "n/a", "null", "none"}  # value texts read as a missing value (case aside)
ETS_MAX_STEPS = 10_000  # Holt-Winters reads at most this many steps before a split: the bundled series whole


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
    freq: str = ""  # pandas offset alias of the steps
    source: str = ""  # the file a user's series came from

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
                  val_len=48, test_len=48, unit="ppm", freq="MS")


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
                  val_len=14 * 24, test_len=8 * 7 * 24, unit="°F", freq="h")


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


# ---- a user's series ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserSeries:
    """A user's series: a CSV/TSV/JSONL file, its time and value columns, and how to regularise and split it."""

    path: str
    time_column: str = "time"
    value_column: str = "value"
    freq: str = ""  # a pandas offset alias (h, D, W, MS, ...); empty: inferred from the times
    max_gap: int = 3  # missing steps in a row that linear interpolation may fill
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    @classmethod
    def given(cls, cfg) -> UserSeries | None:
        """The user's series a recipe config names in `data` and its column and split fields; None if none."""
        if not getattr(cfg, "data", ""):
            return None
        return cls(cfg.data, cfg.time_column, cfg.value_column, cfg.freq, cfg.max_gap, cfg.val_fraction,
                   cfg.test_fraction)

    def flag(self, field: str) -> str:
        """How an error names a column: 'date' (--time_column)."""
        return f"'{getattr(self, field)}' (--{field})"


def load_user(src: UserSeries, season: int = 0, horizon: int = 0) -> Series:
    """The user's series on a regular grid of `src.freq` steps (inferred if not given), gaps filled.

    `season` 0 takes it from the frequency (`season_length`); `horizon` 0 is one season.
    """
    import pandas as pd

    if src.time_column == src.value_column:
        raise ConfigError(f"--time_column and --value_column both name '{src.time_column}'; they must differ")
    times, values, lines = read_user_rows(src)
    check_order(src, times, lines)
    freq = src.freq or infer_freq(src, times, lines)
    offset = parse_freq(freq)
    grid = pd.date_range(times[0], times[-1], freq=offset)
    where = grid.get_indexer(pd.DatetimeIndex(times))
    if (where < 0).any():
        i = int(np.flatnonzero(where < 0)[0])
        raise DataError(f"{src.path} line {lines[i]}: time {pd.Timestamp(times[i])} in column {src.flag('time_column')}"
                        f" is not a step of {offset.freqstr} from the first time {grid[0]}; give the right --freq")
    full = np.full(len(grid), np.nan)
    full[where] = values
    line_at = np.zeros(len(grid), dtype=np.int64)  # 0 where the file has no row for that time
    line_at[where] = lines
    filled = np.isnan(full)
    values = fill_gaps(src, full, grid, line_at, offset.freqstr)
    m = season or season_length(offset)
    if m is None:
        raise ConfigError(f"--freq {offset.freqstr}: no season length is known for it; give --season (1 = none)")
    n = len(values)
    return Series(USER, values, grid.to_numpy(), filled, season=m, horizon=horizon or m,
                  val_len=round(src.val_fraction * n), test_len=round(src.test_fraction * n), unit=src.value_column,
                  freq=offset.freqstr, source=str(src.path))


def describe(s: Series) -> str:
    """One line on a user's series as read: steps, frequency, span, filled steps, season, horizon, splits."""
    import pandas as pd

    first, last = show_times(pd.DatetimeIndex(s.times[[0, -1]]))
    return (f"{s.source}: {len(s.values)} steps of {s.freq} from {first} to {last}, {int(s.filled.sum())} filled;"
            f" season {s.season}, horizon {s.horizon}; train/validation/test {s.val_start}/{s.val_len}/{s.test_len}")


def next_times(s: Series, steps: int) -> list[str]:
    """The `steps` times after the end of the series, at its frequency."""
    import pandas as pd

    return show_times(pd.date_range(s.times[-1], periods=steps + 1, freq=s.freq)[1:])


def show_times(times) -> list[str]:
    """Times as text: dates alone when every one is at midnight."""
    return [str(t.date()) if (times == times.normalize()).all() else str(t) for t in times]


def read_user_rows(src: UserSeries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times datetime64[us], values float64 with NaN where missing, line numbers) of every row, streamed.

    Times are parsed a chunk of rows at a time, so what is held is three numbers per row (24 bytes), not its text.
    """
    from array import array

    from torch_cookbook.data.userdata import read_table

    times, values, lines = [], array("d"), array("q")  # 8 bytes a number, not a Python object's 32
    texts: list[str] = []
    chunk_lines: list[int] = []
    columns = {"time_column": src.time_column, "value_column": src.value_column}
    for row in read_table(src.path, columns, may_be_empty=("value_column",)):  # empty: a missing value, filled
        values.append(parse_value(src, row.line, row.values[src.value_column]))
        texts.append(row.values[src.time_column])
        chunk_lines.append(row.line)
        if len(texts) == 1 << 16:
            times.append(parse_times(src, texts, chunk_lines))
            lines.extend(chunk_lines)
            texts, chunk_lines = [], []
    if texts:
        times.append(parse_times(src, texts, chunk_lines))
        lines.extend(chunk_lines)
    return np.concatenate(times), np.frombuffer(values, dtype=np.float64), np.frombuffer(lines, dtype=np.int64)


def parse_value(src: UserSeries, line: int, text: str) -> float:
    """A number, or NaN for a missing value (empty, NaN, NA, null); anything else is refused naming the row."""
    text = text.strip()
    if text.lower() in MISSING:
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or np.isinf(value):
        raise DataError(f"{src.path} line {line}: column {src.flag('value_column')} is {text!r}, not a finite number")
    return value


def parse_times(src: UserSeries, texts: list[str], lines: list[int]) -> np.ndarray:
    """Dates or date-times pandas can read, as UTC wall times if they carry an offset: datetime64[us]."""
    import warnings

    import pandas as pd

    raw = pd.Series(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": the element-wise retry below reads such rows
        parsed = pd.to_datetime(raw, utc=True, errors="coerce")
        if parsed.isna().any():  # the format was inferred from the first row; another row may use another one
            parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{src.path} line {lines[i]}: column {src.flag('time_column')} is {texts[i]!r}, not a date or"
                        f" time (e.g. 2024-01-31 or 2024-01-31 13:00)")
    return parsed.dt.tz_convert(None).to_numpy().astype("datetime64[us]")


def check_order(src: UserSeries, times: np.ndarray, lines: np.ndarray) -> None:
    """Refuse a time that repeats or goes back: the rows must be sorted, one value per time."""
    import pandas as pd

    back = np.flatnonzero(np.diff(times) <= np.timedelta64(0))
    if len(back):
        i = int(back[0])
        a, b = pd.Timestamp(times[i]), pd.Timestamp(times[i + 1])
        column = f"column {src.flag('time_column')}"
        if a == b:
            raise DataError(f"{src.path} line {lines[i + 1]}: time {b} in {column} repeats line {lines[i]}'s; give one"
                            f" value per time")
        raise DataError(f"{src.path} line {lines[i + 1]}: time {b} in {column} comes before line {lines[i]}'s {a};"
                        f" sort the rows by time")


def infer_freq(src: UserSeries, times: np.ndarray, lines: np.ndarray) -> str:
    """The pandas frequency of the times: of all of them, or else the commonest among the first 1,000 runs of
    three times in a row (gaps break some runs, not most)."""
    import warnings
    from collections import Counter

    import pandas as pd

    index = pd.DatetimeIndex(times)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 announces that infer_freq will return an offset
        whole = index.inferred_freq if len(index) >= 3 else None
        votes = Counter(index[i:i + 3].inferred_freq for i in range(min(len(index) - 2, 1000)))
    votes.pop(None, None)
    if whole or votes:
        return whole or votes.most_common(1)[0][0]
    shown = ", ".join(f"{pd.Timestamp(t)} (line {line})" for t, line in zip(times[:3], lines[:3]))
    raise DataError(f"{src.path}: cannot infer the frequency of column {src.flag('time_column')}: no regular steps"
                    f" among the first times {shown}; give --freq (a pandas offset alias: h, D, W, MS, ...)")


def parse_freq(freq: str):
    """The pandas offset of an alias (h, 30min, D, B, W, MS, QS, YS, ...); anything else is one line."""
    from pandas.tseries.frequencies import to_offset

    try:
        return to_offset(freq)
    except ValueError:
        raise ConfigError(f"--freq {freq}: not a pandas offset alias; use e.g. h, 30min, D, B, W, MS, QS or YS"
                          ) from None


def season_length(offset) -> int | None:
    """Steps per natural cycle of a frequency: a day for sub-daily steps (an hour, or a minute, when a day would be
    over 168 steps), a week for days (5 for business days), a year for weeks, months, quarters and years (1: none).
    None when no such cycle fits a whole number of steps."""
    import pandas.tseries.offsets as o

    if isinstance(offset, o.Tick):
        for period in (86_400, 3_600, 60):  # seconds in a day, an hour, a minute
            steps, rest = divmod(period * 10**9, offset.nanos)
            if rest == 0 and 1 < steps <= 168:
                return steps
        return None
    if isinstance(offset, (o.Day, o.BusinessDay)):
        return (7 if isinstance(offset, o.Day) else 5) if offset.n == 1 else None
    per_year = [(o.Week, 52), ((o.SemiMonthBegin, o.SemiMonthEnd), 24),
                ((o.MonthBegin, o.MonthEnd, o.BusinessMonthBegin, o.BusinessMonthEnd), 12),
                ((o.QuarterBegin, o.QuarterEnd, o.BQuarterBegin, o.BQuarterEnd), 4),
                ((o.YearBegin, o.YearEnd, o.BYearBegin, o.BYearEnd), 1)]
    for kinds, steps in per_year:
        if isinstance(offset, kinds) and steps % offset.n == 0:
            return steps // offset.n
    return None


def fill_gaps(src: UserSeries, full: np.ndarray, grid, line_at: np.ndarray, freq: str) -> np.ndarray:
    """Linear interpolation of runs of at most `src.max_gap` missing steps (missing times or missing values).
    A longer run, or a missing value at either end, is refused naming the rows around it."""
    missing = np.isnan(full)
    if not missing.any():
        return full
    column = f"column {src.flag('value_column')}"
    for end, i in (("starts", 0), ("ends", len(full) - 1)):
        if missing[i]:
            raise DataError(f"{src.path} line {line_at[i]}: the series {end} with a missing value in {column}; only"
                            f" gaps between values are filled: remove that row")
    edges = np.diff(np.r_[0, missing.astype(np.int8), 0])
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long = np.flatnonzero(stops - starts > src.max_gap)
    if len(long):
        a, b = starts[long[0]], stops[long[0]]
        first, last = show_times(grid[[a, b - 1]])
        raise DataError(f"{src.path} lines {line_at[a - 1]}-{line_at[b]}: {b - a} missing steps of {freq} in a row"
                        f" ({first} .. {last}, missing times or empty/NaN in {column}); --max_gap"
                        f" {src.max_gap} fills at most {src.max_gap} by linear interpolation")
    idx = np.arange(len(full))
    return np.where(missing, np.interp(idx, idx[~missing], full[~missing]), full)


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


def prepare(name: str, window_seasons: int, source: UserSeries | None = None, season: int = 0,
            horizon: int = 0) -> Prepared:
    """Series `name` (USER: `source`) with an input window of `window_seasons` seasons, scaled by its training
    split alone. `season` and `horizon` replace the series' own when not 0."""
    if name == USER and source is not None:
        s = load_user(source, season, horizon)
    else:
        s = load(name)
        if season or horizon:
            s = replace(s, season=season or s.season, horizon=horizon or s.horizon)
    check_length(s, window_seasons)
    train = s.values[:s.val_start]
    return Prepared(s, window_seasons * s.season, float(np.std(np.diff(train))), mase_scale(train, s.season))


def check_length(s: Series, window_seasons: int) -> None:
    """Refuse a series too short for window + horizon: each split needs at least one forecast origin."""
    history, h = (window_seasons + 1) * s.season, s.horizon
    need = {"training": (s.val_start, history + h, "--window_seasons, --season or --horizon"),
            "validation": (s.val_len, h, "--horizon, or raise --val_fraction"),
            "test": (s.test_len, h, "--horizon, or raise --test_fraction")}
    for split, (have, least, fix) in need.items():
        if have < least:
            raise DataError(
                f"{s.source or s.name}: {len(s.values)} steps are too short for window + horizon: the {split} split"
                f" has {have} steps and needs at least {least} (a forecast reads {history} steps, (--window_seasons"
                f" {window_seasons} + 1) x season {s.season}, and predicts {h}); give a longer series, or lower {fix}")


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
        res = ExponentialSmoothing(values, trend="add", damped_trend=damped, seasonal="add" if season > 1 else None,
                                   seasonal_periods=season if season > 1 else None,
                                   initialization_method="estimated").fit()
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
        seasonal = m > 1  # a season of one step is no season: the model is Holt's linear trend
        model = ExponentialSmoothing(values, trend="add", damped_trend=fit.damped, seasonal="add" if seasonal else None,
                                     seasonal_periods=m if seasonal else None, initialization_method="known",
                                     initial_level=p["initial_level"], initial_trend=p["initial_trend"],
                                     initial_seasonal=p["initial_seasons"] if seasonal else None)
        res = model.fit(smoothing_level=p["smoothing_level"], smoothing_trend=p["smoothing_trend"],
                        smoothing_seasonal=p["smoothing_seasonal"] if seasonal else None,
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


def baselines(p: Prepared, ets_max_steps: int = ETS_MAX_STEPS) -> tuple[dict[str, dict[str, float]],
                                                                         dict[str, np.ndarray]]:
    """Naive, seasonal naive and Holt-Winters on the test origins: (metrics, forecasts) by name.

    Holt-Winters' damped-or-not is chosen on validation (parameters fit on train), then its parameters are
    re-estimated on train+validation and held fixed through the test period; each fit reads at most the last
    `ets_max_steps` values before its split.
    """
    s, y = p.s, p.s.values
    at = p.origins("test")
    actual = p.targets(at, s.horizon).double().numpy()
    val_at = p.origins("val")
    val_actual = p.targets(val_at, s.horizon).double().numpy()
    val_mae = {}
    for damped in (False, True):
        pred = ets_from(y, s.val_start, val_at, s.horizon, s.season, damped, ets_max_steps)
        val_mae[damped] = float(np.mean(np.abs(pred - val_actual)))
    damped = val_mae[True] < val_mae[False]
    preds = {"naive": naive_forecast(y, at, s.horizon),
             "snaive": seasonal_naive_forecast(y, at, s.horizon, s.season),
             "ets": ets_from(y, s.test_start, at, s.horizon, s.season, damped, ets_max_steps)}
    metrics = {name: forecast_metrics(pred, actual, p.scale) for name, pred in preds.items()}
    metrics["ets"]["damped"] = float(damped)
    return metrics, preds


def ets_from(y: np.ndarray, end: int, at: np.ndarray, horizon: int, season: int, damped: bool,
             max_steps: int) -> np.ndarray:
    """Holt-Winters estimated on the last `max_steps` values before `end` (all of them if fewer), then run with its
    parameters fixed from there on: forecasts from the origins `at` (each at `end` - 1 or later).

    statsmodels' optimiser grows slow, and erratically so, on long series (docs/forecast.md); the filter that
    carries the states forward is cheap at any length.
    """
    start = max(0, end - max_steps)
    return ets_forecast(fit_ets(y[start:end], season, damped), y[start:], at - start, horizon)

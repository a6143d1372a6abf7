"""Seattle daily weather 2012–2015 (1,461 days) from the `vega_datasets` package (its bundled local copy;
BSD-3 package licence, data from NOAA via the Vega project). Columns: date, precipitation (mm), temp_max,
temp_min (°C), wind (m/s), weather (drizzle, fog, rain, snow, sun). Nothing is downloaded.

`windows()` turns it into a supervised problem: from the previous `lookback` days, predict tomorrow's
weather class and tomorrow's maximum temperature. Checked on load: row count, columns and a SHA-256 of
the values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from torch_cookbook.errors import DataError

CLASSES = ("drizzle", "fog", "rain", "snow", "sun")
NUMERIC = ("precipitation", "temp_max", "temp_min", "wind")
SHA256 = "f37210876505a4f9ec3acf80caa18df5300eea540ebc60ac18647808788c6d27"  # numeric columns + weather
HOW_TO_GET = "install it with `pip install vega_datasets`"


@dataclass
class Windows:
    """features (N, lookback * 9 + 2) float32, weather class (N,) int64, temp_max (N,) float32 in °C,
    the day each target belongs to (N,) as numpy datetime64, and the last observed day's class and
    temp_max (the persistence forecast)."""

    x: torch.Tensor
    y_class: torch.Tensor
    y_temp: torch.Tensor
    dates: np.ndarray
    last_class: torch.Tensor
    last_temp: torch.Tensor


def load_frame():  # -> pandas.DataFrame
    try:
        from vega_datasets import local_data
    except ImportError:
        raise DataError(f"the weather data come from vega_datasets, which is not installed; {HOW_TO_GET}") from None
    try:
        df = local_data.seattle_weather()
    except (OSError, ValueError) as e:
        raise DataError(f"vega_datasets' seattle-weather.csv is unreadable ({e}); reinstall: {HOW_TO_GET}") from None
    ok_columns = {"date", *NUMERIC, "weather"} <= set(df.columns)
    if not ok_columns or len(df) != 1461 or digest(df) != SHA256:
        raise DataError(f"vega_datasets' seattle_weather fails its check ({len(df)} rows); reinstall: {HOW_TO_GET}")
    return df


def digest(df) -> str:  # noqa: ANN001 - pandas is imported lazily
    values = df[list(NUMERIC)].to_numpy(dtype=np.float64).tobytes() + "".join(df["weather"]).encode()
    return hashlib.sha256(values).hexdigest()


def windows(lookback: int = 7) -> Windows:
    """Per day t (from day `lookback` on): the previous `lookback` days' precipitation, temperatures, wind and
    one-hot weather (9 values a day), plus tomorrow's day of year as sin/cos (the season is known in advance)."""
    df = load_frame()
    classes = torch.tensor([CLASSES.index(w) for w in df["weather"]])
    numeric = torch.tensor(df[list(NUMERIC)].to_numpy(dtype=np.float32))
    daily = torch.cat([numeric, torch.nn.functional.one_hot(classes, len(CLASSES)).float()], dim=1)  # (days, 9)
    day_of_year = torch.tensor(df["date"].dt.day_of_year.to_numpy(dtype=np.float32))
    angle = 2 * torch.pi * day_of_year / 365.25
    season = torch.stack([torch.sin(angle), torch.cos(angle)], dim=1)
    days = range(lookback, len(df))
    x = torch.stack([torch.cat([daily[t - lookback:t].flatten(), season[t]]) for t in days])
    return Windows(x=x, y_class=classes[lookback:], y_temp=numeric[lookback:, 1].clone(),
                   dates=df["date"].to_numpy()[lookback:], last_class=classes[lookback - 1:-1],
                   last_temp=numeric[lookback - 1:-1, 1].clone())

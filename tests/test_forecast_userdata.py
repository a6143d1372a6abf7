"""forecast on your own series (--data): formats, frequency inference, gap filling, season lengths, a run -> eval ->
predict round trip, and every malformed file refused in one line naming file, line and column, with no run left."""

from __future__ import annotations

import bz2
import gzip
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import only_run_dir, read_summary
from torch_cookbook.data import series as S
from torch_cookbook.errors import DataError


def daily(n: int = 200) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """A daily series with a weekly cycle, a trend and a little noise."""
    t = np.arange(n)
    y = 10 + np.sin(2 * np.pi * t / 7) + 0.01 * t + np.random.default_rng(0).normal(0, 0.1, n)
    return pd.date_range("2020-01-01", periods=n, freq="D"), y.round(3)


def write_series(path, times, values, columns=("date", "sales")):
    """`times`, `values` as a table in the format the file name says (.csv, .tsv, .jsonl; .gz, .bz2)."""
    stamps = [str(t.date()) if isinstance(t, pd.Timestamp) else str(t) for t in times]
    if ".jsonl" in path.suffixes:
        body = "".join(json.dumps({columns[0]: t, columns[1]: None if v is None or v != v else v}) + "\n"
                       for t, v in zip(stamps, values))
    else:
        sep = "\t" if ".tsv" in path.suffixes else ","
        body = sep.join(columns) + "\n" + "".join(f"{t}{sep}{'' if v is None else v}\n" for t, v in zip(stamps, values))
    data = body.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else bz2.compress(data) if path.suffix == ".bz2"
                     else data)
    return path


def user(path, **kw) -> S.UserSeries:
    return S.UserSeries(str(path), "date", "sales", **kw)


@pytest.mark.parametrize("name", ["s.csv", "s.tsv", "s.jsonl", "s.csv.gz", "s.tsv.bz2", "s.jsonl.gz"])
def test_every_format_reads_the_same_series(tmp_path, name):
    times, y = daily()
    s = S.load_user(user(write_series(tmp_path / name, times, y)))
    np.testing.assert_array_equal(s.values, y)
    assert s.freq == "D" and s.season == 7 and s.horizon == 7 and not s.filled.any()
    assert (s.test_len, s.val_len, s.val_start) == (40, 20, 140)  # the last 20 % is test, the 10 % before validation


def test_missing_times_and_values_are_filled_linearly_and_marked(tmp_path):
    times, y = daily()
    keep = np.ones(len(y), bool)
    keep[[30, 31, 32, 90]] = False  # three missing days in a row, and one more
    values = [None if i == 60 else v for i, v in enumerate(y[keep])]  # and an empty value (row 60 of the file)
    s = S.load_user(user(write_series(tmp_path / "s.csv", times[keep], values)))
    assert s.freq == "D" and len(s.values) == len(y)  # the frequency is inferred from the runs between the gaps
    filled = np.flatnonzero(s.filled)
    assert filled.tolist() == [30, 31, 32, 63, 90]  # row 60 of the kept rows is day 63
    np.testing.assert_allclose(s.values[30:33], np.interp([30, 31, 32], [29, 33], y[[29, 33]]))
    np.testing.assert_array_equal(s.values[~s.filled], y[~s.filled])


def test_times_with_utc_offsets_become_utc_and_a_given_freq_is_used(tmp_path):
    times = [f"2021-03-0{1 + h // 24} {h % 24:02d}:00+01:00" for h in range(60)]
    s = S.load_user(user(write_series(tmp_path / "s.csv", times, np.arange(60.0)), freq="h"))
    assert str(pd.Timestamp(s.times[0])) == "2021-02-28 23:00:00" and s.season == 24 and s.freq == "h"


@pytest.mark.parametrize("freq, season", [("h", 24), ("30min", 48), ("5min", 12), ("min", 60), ("D", 7), ("B", 5),
                                          ("W", 52), ("MS", 12), ("ME", 12), ("QS", 4), ("YS", 1), ("3MS", 4),
                                          ("2D", None), ("7h", None)])
def test_season_length_from_the_frequency(freq, season):
    assert S.season_length(S.parse_freq(freq)) == season


def test_yearly_series_has_holt_linear_trend_without_a_season():
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = 50 + 0.8 * np.arange(60) + np.random.default_rng(1).normal(0, 1, 60)
    fit = S.fit_ets(y[:50], 1, damped=False)
    mine = S.ets_forecast(fit, y, np.array([54]), 3)[0]
    p = fit.params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ExponentialSmoothing(y[:55], trend="add", initialization_method="known", initial_level=p["initial_level"],
                                   initial_trend=p["initial_trend"]).fit(
            smoothing_level=p["smoothing_level"], smoothing_trend=p["smoothing_trend"], optimized=False)
    np.testing.assert_allclose(mine, ref.forecast(3), rtol=1e-10)


def test_holt_winters_on_a_long_series_is_estimated_on_its_last_steps():
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    t = np.arange(400)
    y = 5 + 0.02 * t + np.sin(2 * np.pi * t / 12) + np.random.default_rng(2).normal(0, 0.1, 400)
    at = np.array([299, 320])
    whole = S.ets_forecast(S.fit_ets(y[:300], 12, False), y, at, 12)
    np.testing.assert_array_equal(S.ets_from(y, 300, at, 12, 12, False, max_steps=300), whole)
    capped = S.ets_from(y, 300, at, 12, 12, False, max_steps=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ExponentialSmoothing(y[180:300], trend="add", seasonal="add", seasonal_periods=12,
                                   initialization_method="estimated").fit()
    np.testing.assert_allclose(capped[0, :11], ref.forecast(11), rtol=1e-8)  # statsmodels' own fit on the last 120


# ---- a run on a user's series -> eval -> predict ---------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("forecast_user")
    times, y = daily()
    data = write_series(root / "sales.csv", times, y)
    code = main(["run", "forecast", "--profile", "smoke", "--data", str(data), "--time_column", "date",
                 "--value_column", "sales", "--strategies", "direct", "--steps", "4", "--eval_every", "2",
                 "--runs-root", str(root / "runs"), "--threads", "1"])
    assert code == 0
    return only_run_dir(root / "runs", "forecast"), data


def test_a_run_on_user_data_reports_the_model_beside_the_baselines(trained):
    run_dir, data = trained
    metrics = read_summary(run_dir)["metrics"]
    for model in ("naive", "snaive", "ets", "lstm_direct", "lstm"):
        assert np.isfinite(metrics[f"user_{model}_mae"])
    assert metrics["user_lstm_mae_over_snaive"] == metrics["user_lstm_mae"] / metrics["user_snaive_mae"]
    recorded = json.loads((run_dir / "data.json").read_text())["data"]
    assert recorded["path"] == str(data.resolve())
    assert recorded["columns"] == {"time_column": "date", "value_column": "sales", "freq": ""}
    assert (run_dir / "plots" / "forecast_user.png").exists()


def test_eval_recomputes_the_run_metrics(trained, cli):
    run_dir, _ = trained
    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    printed = json.loads(out)
    assert printed["metrics"] == printed["summary_metrics"] and "user_ets_mae" in printed["metrics"]


def test_predict_continues_the_users_series(trained, cli):
    run_dir, _ = trained
    code, out, err = cli("predict", "forecast", run_dir)
    assert code == 0, err
    header, values = out.strip().splitlines()[-2:]
    assert "user: next 7 steps, 2020-07-19 .. 2020-07-25 every D" in header
    assert len(values.split()) == 7 and all(9 < float(v) < 14 for v in values.split())
    code, out, err = cli("predict", "forecast", run_dir, "--values", *[str(v) for v in daily()[1][-28:]])
    assert code == 0, err
    assert out.strip().splitlines()[-1] == values  # the same last 28 values give the same forecast
    code, _, err = cli("predict", "forecast", run_dir, "--series", "co2")
    assert code == 2 and "trained on user" in err


def test_predict_refuses_a_changed_file(trained, cli):
    run_dir, data = trained
    before = data.read_bytes()
    try:
        data.write_bytes(before + b"2020-07-19,11.5\n")
        code, _, err = cli("predict", "forecast", run_dir)
        assert code == 2 and "changed since" in err and len(err.strip().splitlines()) == 1
    finally:
        data.write_bytes(before)


# ---- bad input: one line naming file, line and column; nothing under runs/ ---------------------------------
def _rows(*rows: str) -> bytes:
    return ("date,sales\n" + "".join(r + "\n" for r in rows)).encode()


DAYS = [f"2020-01-{d:02d}" for d in range(1, 32)]
BAD = {
    "not a number": (_rows(f"{DAYS[0]},1", f"{DAYS[1]},abc"), [], "s.csv line 3: column 'sales' (--value_column) is"
                                                                   " 'abc', not a finite number"),
    "infinite": (_rows(f"{DAYS[0]},1", f"{DAYS[1]},inf"), [], "line 3: column 'sales' (--value_column) is 'inf'"),
    "duplicate time": (_rows(f"{DAYS[0]},1", f"{DAYS[1]},2", f"{DAYS[1]},3"), [],
                       "s.csv line 4: time 2020-01-02 00:00:00 in column 'date' (--time_column) repeats line 3's"),
    "unsorted": (_rows(f"{DAYS[1]},1", f"{DAYS[0]},2"), [], "s.csv line 3: time 2020-01-01 00:00:00 in column 'date'"
                                                            " (--time_column) comes before line 2's"),
    "not a time": (_rows(f"{DAYS[0]},1", "soon,2"), [], "s.csv line 3: column 'date' (--time_column) is 'soon', not a"
                                                        " date or time"),
    "irregular": (_rows("2020-01-01,1", "2020-01-03,2", "2020-01-04,3", "2020-01-09,4", "2020-01-19,5"), [],
                  "s.csv: cannot infer the frequency of column 'date' (--time_column): no regular steps among the"
                  " first times 2020-01-01 00:00:00 (line 2)"),
    "off the grid": (_rows(f"{DAYS[0]},1", f"{DAYS[1]},2", "2020-01-02 12:00,3"), ["--freq", "D"],
                     "s.csv line 4: time 2020-01-02 12:00:00 in column 'date' (--time_column) is not a step of D"),
    "no value column": (b"date,price\n2020-01-01,1\n", [], "s.csv line 1: no column 'sales' (--value_column); it has:"
                                                           " date, price"),
    "no time column": (b"day,sales\n2020-01-01,1\n", [], "s.csv line 1: no column 'date' (--time_column)"),
    "empty": (b"", [], "s.csv: empty file"),
    "header only": (b"date,sales\n", [], "s.csv: empty file"),
    "leading NaN": (_rows(f"{DAYS[0]},NaN", *(f"{d},{i}" for i, d in enumerate(DAYS[1:]))), [],
                    "s.csv line 2: the series starts with a missing value in column 'sales' (--value_column)"),
    "long gap": (_rows(*(f"{d},{i}" for i, d in enumerate(DAYS) if not 10 <= i < 15)), [],
                 "s.csv lines 11-12: 5 missing steps of D in a row (2020-01-11 .. 2020-01-15"),
    "NaN run": (_rows(*(f"{d},{'nan' if 10 <= i < 14 else i}" for i, d in enumerate(DAYS))), [],
                "s.csv lines 11-16: 4 missing steps of D in a row"),
    "too short": (_rows(*(f"{d},{i}" for i, d in enumerate(DAYS))), [],
                  "s.csv: 31 steps are too short for window + horizon: the training split has 22 steps and needs at"
                  " least 35"),
    "bad freq": (_rows(f"{DAYS[0]},1"), ["--freq", "fortnightly"], "--freq fortnightly: not a pandas offset alias"),
    "no season for the freq": (_rows(*(f"{d},{i}" for i, d in enumerate(DAYS[::2]))), ["--freq", "2D"],
                               "--freq 2D: no season length is known for it; give --season"),
    "one column for both": (_rows(f"{DAYS[0]},1"), ["--value_column", "date"], "--time_column and --value_column both"
                                                                                " name 'date'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_series_is_refused_in_one_line_with_no_run_left(tmp_path, cli, case):
    body, flags, words = BAD[case]
    (tmp_path / "s.csv").write_bytes(body)
    root = tmp_path / "runs"
    args = ["--data", tmp_path / "s.csv", "--time_column", "date", "--value_column", "sales", *flags]
    code, out, err = cli("run", "forecast", "--profile", "smoke", "--runs-root", root, "--threads", "1", *args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert words in err, err
    assert not (root / "forecast").exists() or not any((root / "forecast").iterdir())


def test_long_gaps_are_filled_when_max_gap_allows_them(tmp_path):
    rows = [f"{d},{i}" for i, d in enumerate(DAYS) if not 10 <= i < 15]
    (tmp_path / "s.csv").write_bytes(_rows(*rows))
    s = S.load_user(user(tmp_path / "s.csv", max_gap=5))
    np.testing.assert_allclose(s.values, np.arange(31.0))
    with pytest.raises(DataError, match="--max_gap 4 fills at most 4"):
        S.load_user(user(tmp_path / "s.csv", max_gap=4))


def test_season_and_horizon_flags_replace_the_defaults(tmp_path):
    times, y = daily()
    path = write_series(tmp_path / "s.csv", times, y)
    p = S.prepare(S.USER, 2, user(path), season=14, horizon=5)
    assert (p.s.season, p.s.horizon, p.window, p.history) == (14, 5, 28, 42)

"""forecast: no future data in training windows, baselines and metrics by hand, ETS against statsmodels, predict."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from conftest import only_run_dir
from torch_cookbook.data import series as S
from torch_cookbook.engine.repro import member_seed
from torch_cookbook.nn.forecasting import rolling_forecast, window_features
from torch_cookbook.recipes import forecast as fc


@pytest.fixture(scope="module")
def co2():
    return S.prepare("co2", fc.Config().window_seasons)


def test_co2_is_monthly_with_honest_gap_fill(co2):
    s = co2.s
    assert len(s.values) == 526 and s.filled.sum() == 5
    assert not s.filled[s.val_start:].any()  # nothing filled in validation or test
    assert np.isfinite(s.values).all()
    assert len(co2.origins("test")) == 48 - 12 + 1  # one 12-step forecast from every origin in the last 4 years


def test_seattle_is_hourly_with_one_filled_hour():
    s = S.load_seattle()
    assert len(s.values) == 8760 and s.filled.sum() == 1
    assert np.all(np.diff(s.times).astype("timedelta64[m]").astype(int) == 60)
    assert s.test_len == 8 * 7 * 24 and s.horizon == 24


def test_seasonal_gap_fill_keeps_the_cycle():
    t = np.arange(240, dtype=float)
    truth = 0.1 * t + 3 * np.sin(2 * np.pi * t / 12)
    y = truth.copy()
    y[100:103] = np.nan
    filled = S.fill_seasonal_gaps(y, (t % 12).astype(int), 12)
    linear = np.interp(t, t[~np.isnan(y)], y[~np.isnan(y)])
    assert np.abs(filled - truth)[100:103].max() < 0.3 < np.abs(linear - truth)[100:103].max()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_no_future_data_in_any_window(co2, split):
    s = co2.s
    index = np.arange(len(s.values), dtype=float)  # a series whose values are their own time index
    at = co2.origins(split, s.horizon)
    inputs, targets = S.windows(index, at, co2.history, s.horizon)
    assert (inputs.max(1) == at).all()  # inputs end at the origin
    assert (targets.min(1) == at + 1).all()  # targets start right after it
    end = {"train": s.val_start, "val": s.test_start, "test": len(s.values)}[split]
    assert targets.max() == end - 1  # training targets never reach validation, validation never test
    if split == "train":
        assert inputs.max() < s.val_start


def test_baselines_and_metrics_by_hand():
    y = np.arange(20, dtype=float) % 4 + np.arange(20) * 0.5  # season 4, trend 0.5
    at = np.array([9])
    assert S.naive_forecast(y, at, 3).tolist() == [[y[9]] * 3]
    # seasonal naive from t=9, m=4: y[6], y[7], y[8], y[9], y[6] for k = 1..5
    assert S.seasonal_naive_forecast(y, at, 5, 4).tolist() == [[y[6], y[7], y[8], y[9], y[6]]]
    pred, actual = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[2.0, 2.0], [3.0, 2.0]])
    m = S.forecast_metrics(pred, actual, scale=2.0)
    assert m["mae"] == pytest.approx(1.0) and m["rmse"] == pytest.approx(np.sqrt(10 / 4))
    assert m["mase"] == pytest.approx(0.5)
    assert S.mase_scale(np.array([1.0, 2.0, 4.0, 3.0]), 2) == pytest.approx((3 + 1) / 2)


def test_ets_rolling_forecast_matches_statsmodels(co2):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = co2.s.values
    fit = S.fit_ets(y[:co2.s.test_start], 12, damped=False)
    t = co2.s.test_start + 5
    mine = S.ets_forecast(fit, y, np.array([t]), 12)[0]
    p = fit.params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ExponentialSmoothing(y[:t + 1], trend="add", seasonal="add", seasonal_periods=12,
                                   initialization_method="known", initial_level=p["initial_level"],
                                   initial_trend=p["initial_trend"], initial_seasonal=p["initial_seasons"]).fit(
            smoothing_level=p["smoothing_level"], smoothing_trend=p["smoothing_trend"],
            smoothing_seasonal=p["smoothing_seasonal"], optimized=False)
    # Steps 1..11 agree exactly. At k = m statsmodels reuses the season state of one cycle earlier (s_{t-m});
    # the textbook forecast (Hyndman & Athanasopoulos) uses the latest one, s_t, as this recipe does.
    np.testing.assert_allclose(mine[:11], ref.forecast(12)[:11], rtol=1e-10)
    textbook = ref.level[-1] + 12 * ref.trend[-1] + ref.season[-1]
    assert mine[11] == pytest.approx(textbook)


class ZeroCorrection(torch.nn.Module):
    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.size(0), self.horizon)


@pytest.mark.parametrize("strategy", ["direct", "recursive"])
def test_lstm_forecast_with_zero_correction_is_seasonal_naive(co2, strategy):
    at = co2.origins("test")
    model = ZeroCorrection(12 if strategy == "direct" else 1)
    pred = rolling_forecast(model, co2, at, strategy, "seasonal", torch.device("cpu"))
    expected = S.seasonal_naive_forecast(co2.s.values, at, 12, 12)
    np.testing.assert_allclose(pred, expected, rtol=1e-6)


class ConstantCorrection(torch.nn.Module):
    def __init__(self, horizon: int, value: float) -> None:
        super().__init__()
        self.horizon, self.value = horizon, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.size(0), self.horizon), self.value)


@pytest.mark.parametrize("strategy", ["direct", "recursive"])
def test_ensemble_forecast_is_the_mean_of_the_members(co2, strategy):
    at = co2.origins("test")
    horizon = 12 if strategy == "direct" else 1
    members = [ConstantCorrection(horizon, 1.0), ConstantCorrection(horizon, -0.5), ConstantCorrection(horizon, 2.0)]
    pred = fc.ensemble_forecast(members, co2, at, strategy, "seasonal", torch.device("cpu"))
    # a constant correction c (in units of sigma) shifts the seasonal-naive forecast by c * sigma at every step
    expected = S.seasonal_naive_forecast(co2.s.values, at, 12, 12) + co2.sigma * (1.0 - 0.5 + 2.0) / 3
    np.testing.assert_allclose(pred, expected, rtol=1e-6)
    one = fc.ensemble_forecast(members[:1], co2, at, strategy, "seasonal", torch.device("cpu"))
    np.testing.assert_array_equal(one, rolling_forecast(members[0], co2, at, strategy, "seasonal",
                                                        torch.device("cpu")))


def test_member_seeds_are_distinct_and_member_zero_is_the_run_seed():
    assert [member_seed(7, 0), member_seed(7, 1)] == [7, 1007]
    seeds = {member_seed(s, m) for s in range(3) for m in range(5)}  # a 3-seed bench of 5-member ensembles
    assert len(seeds) == 15


def test_members_differ_in_initialisation(co2):
    a = fc.make_model(fc.Config(), co2, "direct", seed=member_seed(0, 0))
    b = fc.make_model(fc.Config(), co2, "direct", seed=member_seed(0, 1))
    again = fc.make_model(fc.Config(), co2, "direct", seed=member_seed(0, 1))
    assert not torch.equal(a.head.weight, b.head.weight)
    assert torch.equal(b.head.weight, again.head.weight)


def test_features_are_scaled_differences(co2):
    hist = co2.hist(co2.origins("train")[:3])
    x = window_features(hist, co2.window, 12, co2.sigma)
    assert x.shape == (3, co2.window, 2)
    assert (x[:, -1, 0] == 0).all()  # the last value relative to itself
    torch.testing.assert_close(x[:, :, 1] * co2.sigma, hist[:, 12:] - hist[:, :-12])


def test_training_targets_are_corrections_to_the_base_forecast(co2):
    from torch_cookbook.nn.forecasting import base_forecast, training_pairs

    at = co2.origins("train", 12)
    x, y = training_pairs(co2, 12, "seasonal")
    assert x.shape == (len(at), co2.window, 2) and y.shape == (len(at), 12)
    hist = co2.hist(at)
    torch.testing.assert_close(base_forecast(hist, 12, 12, "seasonal") + co2.sigma * y, co2.targets(at, 12))
    torch.testing.assert_close(base_forecast(hist, 12, 12, "seasonal").double().numpy(),
                               S.seasonal_naive_forecast(co2.s.values, at, 12, 12), check_dtype=False)


def test_validation_origins_are_thinned_evenly(co2):
    every = co2.origins("val")
    thinned = S.val_origins(co2, 10)
    assert len(thinned) == 10 and thinned[0] == every[0] and thinned[-1] == every[-1]
    assert set(thinned) <= set(every) and (np.diff(thinned) > 0).all()
    assert (S.val_origins(co2, 0) == every).all() and (S.val_origins(co2, 10_000) == every).all()


def test_fill_nan_interior_only():
    assert S.fill_nan(np.array([1.0, np.nan, 3.0])).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(Exception, match="starts or ends"):
        S.fill_nan(np.array([1.0, 2.0, np.nan]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("forecast")
    code = main(["run", "forecast", "--profile", "smoke", "--strategies", "direct", "--steps", "4",
                 "--eval_every", "2", "--runs-root", str(root), "--threads", "1"])
    assert code == 0
    return only_run_dir(root, "forecast")


def test_smoke_run_trains_every_member(trained):
    import json

    ensemble = fc.profiles["smoke"]["ensemble"]
    assert ensemble > 1  # the smoke profile (and so the resume test) goes through the ensemble
    names = sorted(p.name for p in (trained / "variants").iterdir())
    assert names == [fc.member_name("co2", "direct", m) for m in range(ensemble)]
    metrics = json.loads((trained / "summary.json").read_text())["metrics"]
    cfg = fc.Config(**fc.profiles["smoke"])
    one = sum(q.numel() for q in fc.make_model(cfg, S.prepare("co2", cfg.window_seasons), "direct").parameters())
    assert metrics["co2_lstm_params"] == ensemble * one  # the forecast uses every member


def test_each_member_is_scored_from_its_best_validation_checkpoint(trained):
    import json

    for member in sorted((trained / "variants").iterdir()):
        logged = [json.loads(line) for line in (member / "metrics.jsonl").read_text().splitlines()]
        val = [r["eval/val_mae"] for r in logged if "eval/val_mae" in r]
        assert len(val) == 2  # --steps 4 --eval_every 2
        result = json.loads((member / "result.json").read_text())
        assert result["val_mae"] == min(val)
        assert (member / "checkpoints" / "best.pt").exists() and (member / "checkpoints" / "last.pt").exists()


def test_predict_continues_the_series(trained, cli):
    code, out, err = cli("predict", "forecast", trained)
    assert code == 0, err
    values = [float(v) for v in out.strip().splitlines()[-1].split()]
    assert len(values) == 12 and all(350 < v < 390 for v in values)
    given = [f"{v:.2f}" for v in S.load_co2().values[-48:]]
    given[10] = "nan"  # an interior gap is filled by interpolation
    code, out, err = cli("predict", "forecast", trained, "--values", *given)
    assert code == 0, err


@pytest.mark.parametrize("values, words", [
    (["1", "2", "3"], "at least 48"),
    (["1"] * 47 + ["nan"], "starts or ends"),
    (["1"] * 47 + ["abc"], "--values"),
])
def test_predict_bad_series_is_one_line_error(trained, cli, values, words):
    code, _, err = cli("predict", "forecast", trained, "--values", *values)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1

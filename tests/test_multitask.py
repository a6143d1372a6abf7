"""Multi-task pieces: the weather windows (no look-ahead), the chronological split, baselines, the uncertainty
weighting, parameter counts, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from torch_cookbook.data import weather
from torch_cookbook.recipes import multitask


def test_windows_use_only_the_past():
    df = weather.load_frame()
    w = weather.windows(lookback=7)
    assert w.x.shape == (len(df) - 7, 7 * 9 + 2)
    t = 100  # the example whose target is day 107
    day = t + 7
    assert w.y_temp[t].item() == pytest.approx(df["temp_max"][day])
    assert w.y_class[t].item() == weather.CLASSES.index(df["weather"][day])
    last_day = w.x[t, 6 * 9:7 * 9]  # the newest day in the window is the day before the target
    assert last_day[1].item() == pytest.approx(df["temp_max"][day - 1])
    assert w.last_temp[t].item() == pytest.approx(df["temp_max"][day - 1])


def test_split_is_chronological_and_standardised_on_train_only():
    cfg = multitask.Config()
    d = multitask.load_data(cfg)
    w = weather.windows(cfg.lookback)
    test = w.dates >= np.datetime64(cfg.test_from)
    assert len(d.x_test) == test.sum() == 365 and test[-365:].all()  # 2015 is the test year
    n_window = w.x.shape[1]
    assert torch.allclose(d.x_train[:, :n_window].mean(0), torch.zeros(n_window), atol=1e-4)
    # today's class, what persistence forecasts, is an extra 0/1 input of every variant
    today = torch.cat([d.x_train, d.x_test])[:, n_window:]
    assert torch.equal(today, F.one_hot(w.last_class, len(weather.CLASSES)).float())
    train = ~torch.from_numpy(test)
    assert d.d_mean == pytest.approx((w.y_temp[train] - w.last_temp[train]).mean().item())
    persistence = (w.last_temp[torch.from_numpy(test)] - w.y_temp[torch.from_numpy(test)]).abs().mean().item()
    assert d.baselines["persistence_mae"] == pytest.approx(persistence)


def test_macro_f1_ignores_classes_absent_from_the_test_set():
    pred, target = torch.tensor([0, 1, 1, 4]), torch.tensor([0, 1, 4, 4])
    from sklearn.metrics import f1_score

    m = multitask.class_metrics(pred, target)
    assert m["accuracy"] == 0.75
    assert m["macro_f1"] == pytest.approx(f1_score(target, pred, average="macro"))


def test_uncertainty_weighting_matches_kendall_and_learns_weights():
    weights = multitask.UncertaintyWeights()
    ce, mse = torch.tensor(2.0), torch.tensor(4.0)
    assert weights(ce, mse).item() == pytest.approx(2.0 + 0.5 * 4.0)  # s = 0: CE + MSE/2
    with torch.no_grad():
        weights.log_var.copy_(torch.tensor([1.0, -1.0]))
    expected = np.exp(-1) * 2.0 + 0.5 + 0.5 * np.exp(1) * 4.0 - 0.5
    assert weights(ce, mse).item() == pytest.approx(expected, rel=1e-6)
    weights(ce, mse).backward()
    assert weights.log_var.grad is not None and (weights.log_var.grad != 0).all()


def test_multihead_has_fewer_parameters_than_two_single_task_networks():
    cfg = multitask.Config(hidden=32)
    n = {name: multitask.n_params(multitask.build(cfg, name, 65)) for name in multitask.VARIANTS}
    assert n["multihead"] < n["single_class"] + n["single_temp"]
    model = multitask.build(cfg, "multihead", 65)
    logits, temp = model(torch.randn(4, 65))
    assert logits.shape == (4, 5) and temp.shape == (4,)
    assert multitask.build(cfg, "single_temp", 65)(torch.randn(4, 65))[0] is None


def test_seed_unscaled_loss_is_dominated_by_the_regression_term():
    """The seed's erratum in numbers: with temperatures in °C the MSE dwarfs the cross-entropy."""
    cfg = multitask.Config(hidden=16)
    d = multitask.load_data(cfg)
    torch.manual_seed(0)
    model = multitask.build(cfg, "seed_unscaled", d.x_train.shape[1])
    x, c, t, last = d.x_train[:256], d.c_train[:256], d.t_train[:256], d.last_train[:256]
    logits, temp = model(x)
    ce = F.cross_entropy(logits, c).item()
    unscaled = multitask.losses("seed_unscaled", model, x, c, t, last, d, cfg, None).item() - ce
    scaled = multitask.losses("multihead", model, x, c, t, last, d, cfg, None).item() - ce
    assert unscaled > 20 * ce and scaled < 5 * ce


def test_targets_compare_with_persistence_on_the_weather_and_the_single_task_models_relatively():
    targets = {t.metric: t for t in multitask.targets}
    assert targets["multihead_accuracy_ratio"].value == 0.98  # "within 2%" is relative, like the MAE ratio's
    for name in ("multihead_accuracy_over_persistence", "multihead_macro_f1_over_persistence"):
        assert targets[name].applies(multitask.Config()) and not targets[name].applies(multitask.Config(data="t.csv"))


@pytest.mark.parametrize("args, fragment", [
    (["--test_from", "2020-01-01"], "--test_from 2020-01-01: must leave data on both sides"),
    (["--test_from", "tomorrow"], "--test_from 'tomorrow': not a date"),
    (["--dropout", "1"], "--dropout 1.0: out of range"),
])
def test_bad_input_is_one_line(cli, tmp_path, args, fragment):
    code, _, err = cli("run", "multitask", "--profile", "smoke", "--runs-root", tmp_path, *args)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())

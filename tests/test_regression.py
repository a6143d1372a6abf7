"""The regression recipe: full-batch descent and minibatch SGD against closed-form least squares, standardisation,
polynomials, data, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch_cookbook import recipes
from torch_cookbook.data import tabular
from torch_cookbook.engine.runs import Run
from torch_cookbook.errors import DataError
from torch_cookbook.recipes import regression as R


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The recipe's own train_arm on diabetes: standardised MSE by full-batch descent and by minibatch SGD (the full
    profile's 4000 steps), and raw inputs at the same lr."""
    cfg = recipes.get("regression").config("full", {"steps": 1000, "eval_every": 250, "threads": 1})
    run = Run.create("regression", cfg, "full", torch.device("cpu"), root=tmp_path_factory.mktemp("runs"))
    data = R.load_data(cfg)
    arms = ("linear_mse", "linear_mse_minibatch", "linear_mse_raw")
    results = {arm: R.train_arm(cfg, run.variant(arm), arm, data) for arm in arms}
    return cfg, run, data, results


def test_sgd_linear_coefficients_match_the_closed_form(trained):
    cfg, run, data, results = trained
    model = R.load_arm_model(cfg, run, "linear_mse", 10)
    x = data.inputs("train", True)
    coef, intercept = R.closed_form(x, data.y_scale(data.split.y_train))  # same standardised target
    weight = model.weight.detach()[0].numpy()
    np.testing.assert_allclose(weight, coef, rtol=1e-3, atol=1e-6)
    assert abs(model.bias.item() - intercept) < 1e-6
    assert results["linear_mse"]["diverged_at"] is None


def test_full_batch_descent_test_mse_within_one_percent_of_the_closed_form(trained):
    cfg, run, data, results = trained
    exact = R.baselines(cfg, data)["closed_form_test_mse"]
    assert results["linear_mse"]["test_mse"] == pytest.approx(exact, rel=0.01)


def test_minibatch_sgd_in_float32_reaches_the_closed_form(trained):
    """The restated target: shuffled batches of 32, no momentum, a cosine-decayed step, float32: test MSE within 1%."""
    cfg, run, data, results = trained
    assert (cfg.sgd_batch_size, cfg.sgd_lr) == (32, 0.1) and R.ARMS["linear_mse_minibatch"][4] == "sgd"
    model = R.load_arm_model(cfg, run, "linear_mse_minibatch", 10)
    assert model.weight.dtype == torch.float32
    exact = R.baselines(cfg, data)["closed_form_test_mse"]
    assert results["linear_mse_minibatch"]["test_mse"] / exact <= 1.01
    assert data.predict(model, data.split.x_test).dtype == torch.float64  # scored in float64, like the closed form
    losses = [v for _, v in run.variant("linear_mse_minibatch").history("train/mse")]
    assert losses[-1] < losses[0]


def test_raw_inputs_diverge_at_the_same_learning_rate(trained):
    _, run, _, results = trained
    raw = results["linear_mse_raw"]
    assert raw["diverged_at"] is not None and raw["diverged_at"] < 100
    assert raw["test_mse"] is None  # a diverged model is not scored
    losses = [v for _, v in run.variant("linear_mse").history("train/mse")]
    assert losses[-1] < losses[0]


def test_polynomial_lbfgs_matches_numpy_least_squares(tmp_path):
    cfg = recipes.get("regression").config("smoke", {"max_degree": 3, "poly_steps": 10})
    run = Run.create("regression", cfg, "smoke", torch.device("cpu"), root=tmp_path)
    co2 = R.load_co2(cfg)
    result = R.fit_polynomial(cfg, run.variant("poly_d3"), 3, co2)
    exact = tabular.polynomial_closed_form(co2, 3)
    assert result["test_mse"] == pytest.approx(exact["poly_closed_form_test_mse"], rel=1e-6)
    assert result["test_r2"] > 0.9  # the trend is smooth; the residual is mostly the yearly cycle


def test_losses_and_polynomial_features():
    pred, y = torch.tensor([0.0, 2.0, 5.0]), torch.tensor([0.0, 0.0, 0.0])
    assert R.make_loss("mse")(pred, y).item() == pytest.approx((0 + 4 + 25) / 3)
    assert R.make_loss("mae")(pred, y).item() == pytest.approx(7 / 3)
    # Huber(δ=1): quadratic inside |e| ≤ 1, linear outside: 0, 2 - 0.5, 5 - 0.5
    assert R.make_loss("huber", 1.0)(pred, y).item() == pytest.approx((0 + 1.5 + 4.5) / 3)
    t = torch.tensor([2.0, -1.0])
    assert torch.equal(tabular.polynomial_features(t, 3), torch.tensor([[2.0, 4.0, 8.0], [-1.0, 1.0, -1.0]]))
    m = tabular.regression_metrics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert m == {"mse": 0.0, "mae": 0.0, "r2": 1.0}


def test_data_splits_are_disjoint_fixed_by_seed_and_standardised_on_train_only():
    a, b, c = tabular.diabetes(0), tabular.diabetes(0), tabular.diabetes(1)
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 442
    assert torch.equal(a.x_test, b.x_test) and not torch.equal(a.x_test, c.x_test)
    rows = {tuple(r.tolist()) for r in torch.cat([a.x_train, a.x_val, a.x_test])}
    assert len(rows) == 442  # no row in two splits
    scale = tabular.Standardizer(a.x_train)
    z = scale(a.x_train)
    torch.testing.assert_close(z.mean(0), torch.zeros(10, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(10, dtype=torch.float64))
    assert scale(a.x_test).mean(0).abs().max() > 1e-3  # the test split keeps the training statistics
    torch.testing.assert_close(scale.inverse(z), a.x_train)
    years, ppm = tabular.co2_series()
    assert years.shape == ppm.shape == (360,) and years[0] == 1960.0
    assert np.all(np.diff(ppm.reshape(30, 12).mean(1)) > 0)  # yearly means rise every year


def test_corrupt_data_is_a_one_line_data_error(monkeypatch):
    monkeypatch.setattr(tabular, "DIABETES_SHA256", "0" * 64)
    with pytest.raises(DataError, match="diabetes: the shipped data fails its checksum"):
        tabular.diabetes(0)


@pytest.mark.parametrize("args, fragment", [
    (["--lr", "0"], "--lr 0.0: out of range, allowed (0, inf)"),
    (["--lr", "-0.1"], "--lr -0.1: out of range, allowed (0, inf)"),
    (["--mlp_lr", "0"], "--mlp_lr 0.0: out of range, allowed (0, inf)"),
    (["--max_degree", "40"], "--max_degree 40: out of range, allowed [1, 15]"),
    (["--lr", "fast"], "'fast' is not a number"),
])
def test_bad_input_is_one_line_with_exit_code_2(cli, tmp_path, args, fragment):
    code, _, err = cli("run", "regression", "--profile", "smoke", "--runs-root", tmp_path, *args)
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1, err

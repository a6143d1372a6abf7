"""The optimizers recipe: every optimizer's step against a few lines of hand-written update math.

`make_optimizer` is what the recipe trains with; each test runs it for a few steps on a small problem and
compares with the update rule written out here (float64, 1e-6). The rules follow the papers and
PyTorch's documented formulas; where PyTorch differs from a paper (e.g. SGD momentum folds the learning
rate outside the buffer) the comment says so.
"""

from __future__ import annotations

import math

import pytest
import torch

from torch_cookbook import recipes
from torch_cookbook.engine.loop import batches, cosine_decay
from torch_cookbook.engine.runs import Run
from torch_cookbook.nn.mlp import make_mlp
from torch_cookbook.recipes.optimizers import (
    OPTIMIZERS,
    PROBLEMS,
    load_data,
    make_optimizer,
    state_floats_per_parameter,
    train,
    trajectory,
)

A = torch.tensor([1.0, 3.0, 0.5, 10.0, 2.0], dtype=torch.float64)  # curvatures
B = torch.tensor([0.3, -1.0, 2.0, 0.1, -0.5], dtype=torch.float64)  # optimum
W0 = torch.tensor([1.0, 1.0, -1.0, 0.5, 0.0], dtype=torch.float64)
STEPS, LR, MU = 5, 0.05, 0.9


def grad(w: torch.Tensor) -> torch.Tensor:
    """Gradient of the loss below: sum a·(w-b)²/2 + sum w⁴/4 (quartic so that gradients are not linear)."""
    return A * (w - B) + w ** 3


def loss(w: torch.Tensor) -> torch.Tensor:
    return (0.5 * A * (w - B) ** 2).sum() + (w ** 4 / 4).sum()


def run_torch(name: str, lr: float = LR, **kwargs) -> torch.Tensor:
    w = W0.clone().requires_grad_(True)
    optimizer = make_optimizer(name, [w], lr, **kwargs)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss(w).backward()
        optimizer.step()
    return w.detach()


def by_hand(update, state: dict) -> torch.Tensor:
    w = W0.clone()
    for t in range(1, STEPS + 1):
        w = update(w, grad(w), t, state)
    return w


def check(name: str, update, lr: float = LR, **kwargs) -> None:
    got, expected = run_torch(name, lr, **kwargs), by_hand(update, {})
    assert not torch.allclose(got, W0), "the optimizer must have moved"
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_sgd():
    check("sgd", lambda w, g, t, s: w - LR * g)


def test_sgd_momentum():
    def update(w, g, t, s):  # PyTorch: buffer b = μ b + g (b = g at the first step), w -= lr·b
        s["b"] = g.clone() if t == 1 else MU * s["b"] + g
        return w - LR * s["b"]

    check("momentum", update, momentum=MU)


def test_sgd_nesterov():
    def update(w, g, t, s):  # look ahead: step along g + μ·b instead of b
        s["b"] = g.clone() if t == 1 else MU * s["b"] + g
        return w - LR * (g + MU * s["b"])

    check("nesterov", update, momentum=MU)


def test_adagrad():
    def update(w, g, t, s):  # per-coordinate rate lr / sqrt(sum of all squared gradients so far)
        s["sum"] = s.get("sum", torch.zeros_like(w)) + g * g
        return w - LR * g / (s["sum"].sqrt() + 1e-10)

    check("adagrad", update)


def test_adadelta():
    rho, eps, lr = 0.9, 1e-6, 1.0

    def update(w, g, t, s):  # step = RMS(previous steps) / RMS(gradients) · g: unit-correct, no base rate
        v = rho * s.get("v", torch.zeros_like(w)) + (1 - rho) * g * g
        u = s.get("u", torch.zeros_like(w))
        delta = (u + eps).sqrt() / (v + eps).sqrt() * g
        s["v"], s["u"] = v, rho * u + (1 - rho) * delta * delta
        return w - lr * delta

    check("adadelta", update, lr=lr)


def test_rmsprop():
    alpha, eps = 0.99, 1e-8

    def update(w, g, t, s):  # Adagrad with a decaying average instead of a sum
        s["v"] = alpha * s.get("v", torch.zeros_like(w)) + (1 - alpha) * g * g
        return w - LR * g / (s["v"].sqrt() + eps)

    check("rmsprop", update)


def adam_update(w, g, t, s, weight_decay=0.0):
    b1, b2, eps = 0.9, 0.999, 1e-8
    w = w * (1 - LR * weight_decay)  # AdamW: decay the weights directly, outside the adaptive scaling
    s["m"] = b1 * s.get("m", torch.zeros_like(w)) + (1 - b1) * g
    s["v"] = b2 * s.get("v", torch.zeros_like(w)) + (1 - b2) * g * g
    m_hat, v_hat = s["m"] / (1 - b1 ** t), s["v"] / (1 - b2 ** t)
    return w - LR * m_hat / (v_hat.sqrt() + eps)


def test_adam():
    check("adam", adam_update)


def test_adamw_decays_weights_outside_the_adaptive_step():
    check("adamw", lambda w, g, t, s: adam_update(w, g, t, s, weight_decay=0.1), weight_decay=0.1)
    # and that differs from Adam with an L2 term in the loss (what Adam's own weight_decay does)
    assert not torch.allclose(run_torch("adamw", weight_decay=0.1), run_torch("adam"), atol=1e-4)


def test_state_per_parameter_counts_buffers():
    expected = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "adadelta": 2, "rmsprop": 1, "adam": 2,
                "adamw": 2}
    model = torch.nn.Linear(4, 3)
    for name in OPTIMIZERS:
        optimizer = make_optimizer(name, model.parameters(), 0.01)
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
        assert state_floats_per_parameter(optimizer) == expected[name], name


def test_unknown_optimizer_is_a_value_error():
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        make_optimizer("lion", [torch.zeros(1, requires_grad=True)], 0.1)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_trajectories_stay_finite_and_approach_the_quadratic_minimum(name):
    path = trajectory("ill_conditioned", name, 200)
    assert torch.isfinite(path).all()
    fn = PROBLEMS["ill_conditioned"][0]
    assert fn(path[-1]) < 0.1 * fn(path[0]), name
    rosen = trajectory("rosenbrock", name, 200)
    assert torch.isfinite(rosen).all() and rosen.abs().max() < 10, name


@pytest.mark.parametrize("args, fragment", [
    (["--optimizers", "adam", "lion"], "--optimizers lion: not one of the allowed values (sgd, momentum"),
    (["--lr_scales", "1", "0"], "--lr_scales 0.0: out of range, allowed (0, inf)"),
    (["--lr-scales", "-3"], "--lr_scales -3.0: out of range, allowed (0, inf)"),
    (["--momentum", "1"], "--momentum 1.0: out of range"),
])
def test_bad_input_is_one_line_with_exit_code_2(cli, tmp_path, args, fragment):
    code, out, err = cli("run", "optimizers", "--profile", "smoke", "--runs-root", tmp_path, *args)
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "optimizers").exists(), "nothing may be written for a bad config"


def test_cosine_schedule_ends_at_zero():
    f = cosine_decay(100)  # the schedule every optimizer trains with
    assert f(0) == 1.0 and f(100) == pytest.approx(0.0, abs=1e-12) and f(50) == pytest.approx(0.5)
    assert math.isclose(f(200), f(100))


def test_a_diverging_learning_rate_is_a_sweep_result_at_its_first_non_finite_step(tmp_path):
    """diverged_at is the 0-based step whose loss or gradient first turns non-finite (the steps that went
    well), found here by the same training written out by hand; the sweep point scores 0, not a crash."""
    cfg = recipes.get("optimizers").config("smoke", {"threads": 1})
    run = Run.create("optimizers", cfg, "smoke", torch.device("cpu"), root=tmp_path)
    data = load_data(cfg)
    lr = 1e4
    result = train(cfg, run.variant("sweep_sgd_x100000"), "sgd", lr, cfg.sweep_steps, data, final=False)

    torch.manual_seed(cfg.seed)
    model = make_mlp((28 * 28, cfg.hidden, 10), flatten=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(cfg.sweep_steps))
    expected = None
    for step, idx in zip(range(cfg.sweep_steps), batches(len(data["y_train"]), cfg.batch_size, cfg.seed)):
        loss = torch.nn.functional.cross_entropy(model(data["x_train"][idx]), data["y_train"][idx])
        optimizer.zero_grad()
        loss.backward()
        norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            expected = step
            break
        optimizer.step()
        schedule.step()
    assert expected is not None, "lr 1e4 should diverge within the sweep"
    assert result["diverged_at"] == expected
    assert result["val_accuracy"] == 0.0

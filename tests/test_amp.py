"""Mixed precision: --amp through the engine on another recipe, and the amp recipe's measurements.

bf16 and fp16 matmuls on this CPU (AVX2, no 16-bit units) are ~30-300x slower than fp32, so every
16-bit computation here is tiny.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import only_run_dir, read_summary
from torch_cookbook import recipes
from torch_cookbook.data import fashion_mnist
from torch_cookbook.engine.loop import autocast, grad_scaler
from torch_cookbook.engine.runs import Run
from torch_cookbook.nn.mlp import make_mlp
from torch_cookbook.recipes.amp import fp16_underflow, saved_for_backward_mb, train_variant, unsupported_reason

CPU = torch.device("cpu")


def mlp(hidden: int) -> torch.nn.Sequential:
    """The recipe's model: 784 → hidden → hidden → 10 on images."""
    return make_mlp((28 * 28, hidden, hidden, 10))


def test_a_smoke_recipe_trains_with_amp_bf16_on_cpu(cli, tmp_path):
    """`--amp bf16` reaches another recipe's training loop through the engine's autocast."""
    code, out, err = cli("run", "batchnorm", "--profile", "smoke", "--amp", "bf16", "--threads", "1",
                         "--steps", "6", "--eval_every", "3", "--runs-root", tmp_path)
    assert code == 0, err
    run_dir = only_run_dir(tmp_path, "batchnorm")
    summary = read_summary(run_dir)
    import json

    assert json.loads((run_dir / "config.json").read_text())["config"]["amp"] == "bf16"
    for name in ("plain", "bn"):
        acc = summary["metrics"][f"{name}_final_accuracy"]
        assert acc is not None and 0.0 <= acc <= 1.0 and math.isfinite(acc)


def test_engine_autocast_really_computes_in_bf16():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with autocast(CPU, "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast(CPU, "off"):
        assert layer(x).dtype == torch.float32
    assert grad_scaler(CPU, "fp16").is_enabled() and not grad_scaler(CPU, "bf16").is_enabled()


def test_sixteen_bit_halves_what_backward_keeps():
    torch.manual_seed(0)
    model = mlp(64)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    fp32 = saved_for_backward_mb(model, x, y, "off", False, CPU)
    bf16 = saved_for_backward_mb(model, x, y, "bf16", False, CPU)
    half = saved_for_backward_mb(model.half(), x, y, "off", True, CPU)
    assert bf16 < 0.6 * fp32 and half < 0.6 * fp32


def test_pure_fp16_gradients_underflow_and_loss_scaling_rescues_them():
    """A model whose first-layer gradients are ~1e-8: fp16 flushes them to zero; a loss scale of 1024 keeps them."""
    torch.manual_seed(0)
    model = mlp(16)
    with torch.no_grad():  # tiny later weights → tiny gradients for the first layer (chain rule)
        model[3].weight.mul_(1e-3)
        model[5].weight.mul_(1e-3)
    model = model.half()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    m = fp16_underflow(model, x, y, scale=1024.0, lr=0.05, device=CPU)
    assert m["grad/underflow_unscaled"] > 0.5
    assert m["grad/underflow_scaled"] < 0.05
    assert m["grad/lost_update"] > 0.5  # and the surviving updates are too small to change fp16 weights


def test_an_overflowing_precision_is_a_result_and_keeps_its_last_finite_weights(tmp_path):
    """Pure fp16 at a far too large learning rate: the overflow is recorded (accuracy 0), not raised, and
    the check comes before the update, so the saved weights are the last finite ones."""
    cfg = recipes.get("amp").config("smoke", {"lr": 20.0, "threads": 1})
    run = Run.create("amp", cfg, "smoke", CPU, root=tmp_path)
    sub = run.variant("fp16_pure")
    result = train_variant(cfg, sub, "fp16_pure", fashion_mnist.subsets(cfg.train_subset, cfg.eval_subset))
    assert result["diverged_at"] is not None and 0 < result["diverged_at"] < cfg.steps
    assert result["accuracy"] == 0.0
    weights = sub.load()["state"]["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_every_precision_runs_here_or_says_why():
    for name in ("fp32", "fp16_pure", "fp16_autocast", "bf16_autocast"):
        reason = unsupported_reason(name, CPU, hidden=4)
        assert reason is None or reason.startswith(f"{name} is not supported on cpu")


@pytest.mark.parametrize("args, expected", [
    (["--variants", "bf16_autocast"], "--variants: must include fp32"),
    (["--variants", "fp32", "fp8"], "--variants fp8: not one of the allowed values"),
    (["--probe_scale", "0"], "--probe_scale 0.0: out of range"),
])
def test_bad_amp_input_is_one_line(cli, tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("run", "amp", "--profile", "smoke", *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err
    assert not (tmp_path / "runs").exists()

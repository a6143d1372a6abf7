"""benchmarks/throughput.py: the step it times is a real training step in each precision, and FLOPs are counted once."""

from __future__ import annotations

import pytest
import torch

from conftest import load_benchmark_script


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("throughput")


@pytest.mark.parametrize("variant", ["eager", "bf16", "fp16"])
def test_timed_step_trains_the_model_in_each_precision(script, variant):
    torch.manual_seed(0)
    model = script.MODELS["amp MLP 784-128-128-10"]()
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    seconds = script.time_steps(model, x, y, steps=2, adam="foreach", amp_dtype=script.AMP_VARIANTS.get(variant))
    assert seconds > 0
    # Adam moved every parameter: the timed loop is a real update, also under autocast and the GradScaler.
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 master weights


def test_measure_row_counts_flops_and_relates_them_to_the_ceiling(script):
    row = script.measure("amp MLP 784-128-128-10", batch=4, steps=1, variant="bf16", ceiling=1000.0)
    # Multiply-adds x 2 FLOPs; forward + backward is 3 matmuls per layer, but the first layer's input needs no
    # gradient (the images do not require grad), so it has 2.
    per_image = 2 * (2 * 784 * 128 + 3 * (128 * 128 + 128 * 10))
    assert row["mflop_per_step"] == pytest.approx(4 * per_image / 1e6, rel=0.01)
    assert row["fraction_of_ceiling"] == pytest.approx(row["gflops"] / 1000.0, abs=1e-3)

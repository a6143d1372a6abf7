"""benchmarks/profile_recipes.py: the sampled-window summary adds up cycles and divides by recorded time only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conftest import load_benchmark_script


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("profile_recipes")


def event(key: str, total_s: float, self_s: float, count: int = 1) -> SimpleNamespace:
    return SimpleNamespace(key=key, cpu_time_total=total_s * 1e6, self_cpu_time_total=self_s * 1e6, count=count)


def test_summary_merges_cycles_and_uses_recorded_time(script):
    cycle_a = [event("data", 0.1, 0.0), event("Optimizer.step#AdamW.step", 0.2, 0.05),
               event("autograd::engine::evaluate_function: MmBackward0", 0.3, 0.0), event("aten::mm", 0.4, 0.4, 8)]
    cycle_b = [event("aten::mm", 0.2, 0.2, 4), event("aten::add_", 0.1, 0.1, 8)]
    row = script.summarise("x", "quick", 1, wall=100.0, recorded_s=2.0, mode="2 windows", cycles=[cycle_a, cycle_b])
    # shares are of the 2 s recorded, not of the 100 s run
    assert row["data_share"] == pytest.approx(0.05)
    assert row["optimizer_share"] == pytest.approx(0.1)
    assert row["backward_share"] == pytest.approx(0.15)
    assert row["torch_ops_share"] == pytest.approx(0.35)  # aten self time 0.4 + 0.2 + 0.1
    assert row["outside_ops_share"] == pytest.approx(0.65)
    assert row["top_ops"][0] == {"op": "aten::mm", "self_s": 0.6, "share": 0.3, "calls": 12}
    assert [op["op"] for op in row["top_ops"]] == ["aten::mm", "aten::add_"]
    assert row["recorded"] == "2 windows" and row["wall_s"] == 100.0

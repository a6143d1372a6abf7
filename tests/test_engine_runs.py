"""Run.log: every run gets perf/steps_per_s without the recipe asking, and it never spans a restart."""

from __future__ import annotations

import json
import time

import torch

from torch_cookbook import recipes
from torch_cookbook.engine.runs import Run


def make_run(tmp_path) -> Run:
    cfg = recipes.get("regression").config("smoke", {})
    return Run.create("regression", cfg, "smoke", torch.device("cpu"), root=tmp_path)


def records(run: Run) -> list[dict]:
    return [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]


def test_throughput_is_logged_from_the_second_record_on(tmp_path):
    run = make_run(tmp_path)
    run.log({"train/loss": 1.0}, 10)
    time.sleep(0.05)
    run.log({"train/loss": 0.5}, 20)
    first, second = records(run)
    assert "perf/steps_per_s" not in first  # nothing to measure against yet
    assert 0 < second["perf/steps_per_s"] <= 10 / 0.05  # 10 steps in at least 50 ms
    assert run.history("perf/steps_per_s") == [(20, second["perf/steps_per_s"])]


def test_a_recipes_own_throughput_is_kept_and_same_step_records_add_none(tmp_path):
    run = make_run(tmp_path)
    run.log({"train/loss": 1.0}, 10)
    run.log({"eval/accuracy": 0.5}, 10)  # an evaluation at the same step: no interval to measure
    run.log({"train/loss": 0.5, "perf/steps_per_s": 123.0}, 20)
    assert [r.get("perf/steps_per_s") for r in records(run)] == [None, None, 123.0]


def test_a_resumed_run_does_not_count_the_downtime(tmp_path):
    run = make_run(tmp_path)
    run.log({"train/loss": 1.0}, 10)
    resumed = Run(run.dir, run.recipe, run.cfg, run.profile, run.device)  # a new process after a crash
    resumed.log({"train/loss": 0.5}, 20)
    assert "perf/steps_per_s" not in records(resumed)[-1]

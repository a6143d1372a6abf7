"""Run: perf/steps_per_s for every run without the recipe asking (never spanning a restart), and the config hash
its checkpoints carry."""

from __future__ import annotations

import json
import time

import pytest
import torch

from torch_cookbook import recipes
from torch_cookbook.engine.config import config_hash
from torch_cookbook.engine.runs import Run
from torch_cookbook.errors import CheckpointError


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


def test_plots_of_any_colour_mode_become_tensorboard_images(tmp_path):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = make_run(tmp_path)
    run.log({"train/loss": 1.0}, 7)
    Image.new("L", (16, 8), 128).save(run.plot_path("grey"))  # e.g. a saved mask
    Image.new("RGB", (16, 8), (255, 0, 0)).save(run.plot_path("rgb"))  # e.g. a sample grid
    run.write_summary({"train/loss": 1.0}, [])
    [events] = (run.dir / "tb").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
    accumulator.Reload()
    assert sorted(accumulator.Tags()["images"]) == ["plots/grey", "plots/rgb"]
    image = accumulator.Images("plots/grey")[0]
    assert (image.step, image.width, image.height) == (7, 16, 8)


def test_take_returns_the_rows_and_the_summary_counts_them(tmp_path):
    from torch_cookbook.engine import loop

    run = make_run(tmp_path)  # a new top-level run starts the counters from zero
    x, y = torch.arange(20.0).reshape(10, 2), torch.arange(10)
    idx = torch.tensor([7, 2, 5])
    xb, yb = loop.take(idx, x, y, device=torch.device("cpu"))
    assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
    loop.take(idx[:2], x, device=torch.device("cpu"))
    summary = run.write_summary({"loss": 1.0}, [])
    assert summary["train_samples"] == 5
    assert 0 < summary["data_time_s"] <= summary["process_wall_s"]
    Run.create("regression", run.cfg, "smoke", torch.device("cpu"), root=tmp_path)
    assert loop.SAMPLES_TAKEN == 0 and loop.DATA_TIME_S == 0.0


def test_summary_has_no_data_figures_when_take_was_not_used(tmp_path):
    run = make_run(tmp_path)
    assert "data_time_s" not in run.write_summary({"loss": 1.0}, [])


def test_a_setting_added_later_at_its_default_leaves_an_older_runs_checkpoints_loadable(tmp_path):
    run = make_run(tmp_path)
    path = run.dir / "config.json"
    recorded = json.loads(path.read_text())
    # The run as an older version of the recipe made it: without a setting (here `lr`) the recipe has since.
    recorded["config"].pop("lr")
    path.write_text(json.dumps(recorded))
    run.checkpointer(every=1, model=torch.nn.Linear(2, 1)).save(step=1)
    assert run.config_hash() != config_hash(run.cfg)  # hashing every current setting would refuse it
    Run(run.dir, "regression", run.cfg, "smoke", torch.device("cpu")).load(torch.nn.Linear(2, 1))
    # A recorded setting that differs still makes the checkpoint foreign.
    changed = recipes.get("regression").config("smoke", {"seed": run.cfg.seed + 1})
    with pytest.raises(CheckpointError, match="different config"):
        Run(run.dir, "regression", changed, "smoke", torch.device("cpu")).load(torch.nn.Linear(2, 1))

"""Every registered recipe, parametrised over the registry: the smoke profile writes a complete run
directory, `eval` reproduces its metrics, and a run SIGKILLed part-way resumes to the same metrics.

New recipes are covered automatically. Timing metrics (named `*_s` or `*_per_s`) are excluded from
the equality checks since wall time differs between runs.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import assert_same_metrics, comparable, only_run_dir, read_summary, run_subprocess
from torch_cookbook import recipes

# batchnorm has its own, more detailed versions of these tests in test_batchnorm.py
NAMES = [n for n in recipes.names() if n != "batchnorm"]
# Recipes that cannot run in this environment declare why in SKIP_REASON (module attribute).


@pytest.fixture(params=NAMES)
def smoke(request, smoke_runs):
    name = request.param
    reason = getattr(recipes.get(name).module, "SKIP_REASON", None)
    if reason:
        pytest.skip(reason)
    run_dir, calls = smoke_runs(name)
    return name, run_dir, calls


def tensorboard_images(run_dir) -> set[str]:
    """Image tags in the run's top-level TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (run_dir / "tb").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        tags |= set(accumulator.Tags()["images"])
    return tags


def test_smoke_run_is_complete(smoke):
    name, run_dir, calls = smoke
    summary = read_summary(run_dir)
    assert summary["recipe"] == name and summary["profile"] == "smoke"
    assert summary["metrics"], "a recipe must report metrics"
    for key, value in summary["metrics"].items():
        assert value is None or isinstance(value, (int, float)), (key, value)
    assert {t["metric"] for t in summary["targets"]} == {t.metric for t in recipes.get(name).targets}
    plots = {p.stem for p in (run_dir / "plots").glob("*.png")}
    assert plots, "a recipe must save at least one plot"
    assert {tag.removeprefix("plots/") for tag in tensorboard_images(run_dir)} == plots
    assert json.loads((run_dir / "config.json").read_text())["recipe"] == name
    assert calls > 0, "training must report steps through Checkpointer.after_step"


def test_eval_reproduces_summary(smoke, cli):
    name, run_dir, _ = smoke
    if not hasattr(recipes.get(name).module, "evaluate"):
        pytest.skip(f"{name} has no evaluate()")
    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    result = json.loads(out)
    for key, value in comparable(result["metrics"]).items():
        expected = result["summary_metrics"][key]
        if expected is None or value is None:
            assert value == expected, key
        else:
            assert value == pytest.approx(expected, rel=1e-5, abs=1e-6), key


@pytest.mark.skipif(os.environ.get("COOKBOOK_SKIP_RESUME") == "1", reason="COOKBOOK_SKIP_RESUME=1")
def test_killed_run_resumes_to_same_metrics(smoke, tmp_path, cli):
    name, run_dir, calls = smoke
    module = recipes.get(name).module
    crash_at = max(1, calls * 2 // 3)
    crashed = run_subprocess("run", name, "--profile", "smoke", "--runs-root", tmp_path, "--threads", "2",
                             "--checkpoint_every", "2", env={"COOKBOOK_CRASH_AT_CALL": str(crash_at)})
    assert crashed.returncode == -9, crashed.stdout[-2000:] + crashed.stderr[-2000:]
    crashed_dir = only_run_dir(tmp_path, name)
    assert not (crashed_dir / "summary.json").exists()
    code, _, err = cli("run", "--resume", crashed_dir, "--threads", "2")  # in-process: the kill needed a process
    assert code == 0, err[-3000:]
    assert_same_metrics(read_summary(crashed_dir)["metrics"], read_summary(run_dir)["metrics"],
                        getattr(module, "RESUME_TOLERANCE", 0.0))

"""The kill/resume matrix: every registered recipe is SIGKILLed at several points, resumed with
`cookbook run --resume RUN_DIR`, and must end with the same metrics and the same final checkpoints
(model, optimizer, scheduler and scaler states) as an uninterrupted run.

Kill points per recipe: after 10%, 50% and 90% of its finished steps (engine.faults.CALLS, counted over
the whole process, across variants), and inside the middle checkpoint write (after the data is
on disk, before the rename). Slow: `make reliability` runs it on the quick profiles
(COOKBOOK_MATRIX_PROFILE=quick); without that variable it uses the smoke profiles. CI (`-m "not slow"`)
covers one kill point per recipe in test_recipe_contract.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import assert_same_metrics, only_run_dir, read_summary, run_subprocess
from torch_cookbook import recipes
from torch_cookbook.cli import main
from torch_cookbook.data.cache import cache_dir
from torch_cookbook.engine import faults

PROFILE = os.environ.get("COOKBOOK_MATRIX_PROFILE", "smoke")
# Smoke runs are a few dozen steps: save every 2 so most kill points resume from a real checkpoint.
# Quick runs keep each recipe's own cadence, as a user gets it.
EVERY = {"smoke": "2"}.get(PROFILE, "0")
THREADS = "1"  # the same for the reference and the crashed runs: thread count can change float reductions
KILL_POINTS = {"early": 0.1, "middle": 0.5, "late": 0.9, "in-save": None}


@dataclass
class Reference:
    run_dir: Path
    calls: int  # finished steps of the uninterrupted run (engine.faults.CALLS)
    saves: int  # atomic writes of the uninterrupted run (checkpoints, plus any data cache it built)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """`get(name) -> Reference`: one uninterrupted run per recipe, made in-process and shared by its kill points."""
    root = tmp_path_factory.mktemp(f"matrix-reference-{PROFILE}")
    made: dict[str, Reference] = {}

    def run_once(name: str, where: Path) -> Reference:
        faults.CALLS = faults.SAVES = 0
        threads = torch.get_num_threads()
        try:
            code = main(["run", name, "--profile", PROFILE, "--runs-root", str(where), "--threads", THREADS,
                         "--checkpoint_every", EVERY])
        finally:
            torch.set_num_threads(threads)
        assert code == 0, f"uninterrupted {PROFILE} run of {name} failed"
        return Reference(only_run_dir(where, name), faults.CALLS, faults.SAVES)

    def get(name: str) -> Reference:
        if name not in made:
            cached = sorted(cache_dir().iterdir())
            made[name] = run_once(name, root / "first")
            if sorted(cache_dir().iterdir()) != cached:
                # The run filled a cache (transfer's source model, say) and counted the steps that made it; the
                # crashed runs will find it, so count again on the warm cache or the late kill point is never hit.
                made[name] = run_once(name, root / "warm")
        return made[name]

    return get


def crash_env(point: str, ref: Reference) -> dict[str, str]:
    fraction = KILL_POINTS[point]
    if fraction is None:
        return {"COOKBOOK_CRASH_IN_SAVE": str(max(1, ref.saves // 2))}
    return {"COOKBOOK_CRASH_AT_CALL": str(max(1, int(ref.calls * fraction)))}


def final_checkpoints(run_dir: Path) -> dict[str, dict]:
    """Every checkpoint of a run (all variants) by relative path; `extra` (bookkeeping such as CPU time)
    and the RNG states are left out, the trained state and its step are kept."""
    out = {}
    for path in sorted(run_dir.rglob("checkpoints/*.pt")):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if "step" not in ckpt:  # not a training checkpoint (e.g. gan's copy of its feature classifier): all of it
            out[str(path.relative_to(run_dir))] = ckpt
            continue
        out[str(path.relative_to(run_dir))] = {"step": ckpt["step"], "best_value": ckpt.get("best_value"),
                                               "state": ckpt["state"]}
    return out


def assert_same_state(got, expected, tolerance: float, where: str) -> None:
    """Recursive equality of state dicts: tensors bit-exact (NaN equal to NaN) or within `tolerance`."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor), where
        torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance, equal_nan=True,
                                   msg=lambda m: f"{where}: {m}")
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            assert_same_state(got[key], expected[key], tolerance, f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same_state(g, e, tolerance, f"{where}[{i}]")
    elif isinstance(expected, float) and expected != expected:  # NaN, e.g. the loss of a diverged arm
        assert isinstance(got, float) and got != got, where
    elif isinstance(expected, float) and tolerance:
        assert got == pytest.approx(expected, rel=tolerance, abs=tolerance), where
    else:
        assert got == expected, where


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.parametrize("name", recipes.names())
def test_killed_and_resumed_run_equals_uninterrupted(name, point, reference, tmp_path):
    module = recipes.get(name).module
    if getattr(module, "SKIP_REASON", None):
        pytest.skip(module.SKIP_REASON)
    ref = reference(name)
    crashed = run_subprocess("run", name, "--profile", PROFILE, "--runs-root", tmp_path, "--threads", THREADS,
                             "--checkpoint_every", EVERY, env=crash_env(point, ref))
    assert crashed.returncode == -9, f"the kill point was not reached: {crashed.stderr[-2000:]}"
    run_dir = only_run_dir(tmp_path, name)
    assert not (run_dir / "summary.json").exists(), "a killed run must not claim success"
    if point == "in-save":  # killed in a checkpoint write, not in a data cache write
        assert list(run_dir.rglob("checkpoints/.*.pt.tmp-*")), "the kill should leave a checkpoint temp file"

    resumed = run_subprocess("run", "--resume", run_dir, "--threads", THREADS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    tolerance = getattr(module, "RESUME_TOLERANCE", 0.0)
    assert_same_metrics(read_summary(run_dir)["metrics"], read_summary(ref.run_dir)["metrics"], tolerance)
    expected, got = final_checkpoints(ref.run_dir), final_checkpoints(run_dir)
    assert expected, f"{name} saved no checkpoint: there are no final parameters to compare"
    assert got.keys() == expected.keys()
    for path in expected:
        assert_same_state(got[path], expected[path], tolerance, path)
    assert not list(run_dir.rglob("checkpoints/.*.tmp-*")), "resume must remove stale temp files"

"""Shared test helpers: run the CLI in-process or as a subprocess, with runs under a temp folder."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torch_cookbook.cli import main

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(capsys):
    """Run `cookbook ARGS` in-process; returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


def run_subprocess(*args: str, env: dict | None = None, cwd: Path | None = None,
                   timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run `python -m torch_cookbook ARGS` in a fresh process (for crashes, signals and torchrun)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # Generous by default: a loaded machine is slow, and these tests check behaviour, not speed.
    timeout = timeout or float(os.environ.get("COOKBOOK_TEST_TIMEOUT", "900"))
    return subprocess.run([sys.executable, "-m", "torch_cookbook", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd or REPO, timeout=timeout)


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """`get(name) -> (run_dir, steps)`: each recipe's smoke run, made once per test session and shared
    by the contract tests and the report test. `steps` counts finished steps (engine.faults.CALLS)."""
    from torch_cookbook.engine import faults

    root = tmp_path_factory.mktemp("smoke-runs")
    made: dict[str, tuple[Path, int]] = {}

    def get(name: str) -> tuple[Path, int]:
        if name not in made:
            faults.CALLS = 0
            code = main(["run", name, "--profile", "smoke", "--runs-root", str(root), "--threads", "2"])
            assert code == 0, f"smoke run of {name} failed"
            made[name] = (only_run_dir(root, name), faults.CALLS)
        return made[name]

    get.root = root
    return get


def load_benchmark_script(name: str):
    """Import benchmarks/<name>.py (a script, not a package module) so its functions can be tested."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def only_run_dir(root: Path, recipe: str) -> Path:
    dirs = sorted((root / recipe).iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def is_timing(key: str) -> bool:
    return key.endswith("_s") or key.endswith("_per_s") or key.startswith("perf/")


def comparable(metrics: dict) -> dict:
    """Metrics without the timing ones, which differ between runs of the same computation."""
    return {k: v for k, v in metrics.items() if not is_timing(k)}


def assert_same_metrics(got: dict, expected: dict, tolerance: float = 0.0) -> None:
    """Equal non-timing metrics: exactly, or within a recipe's declared RESUME_TOLERANCE (relative and absolute)."""
    got, expected = comparable(got), comparable(expected)
    assert got.keys() == expected.keys()
    for key in expected:
        if tolerance == 0.0 or expected[key] is None:
            assert got[key] == expected[key], key
        else:
            assert got[key] == pytest.approx(expected[key], rel=tolerance, abs=tolerance), key

"""Shared test helpers: run the CLI in-process or as a subprocess, with runs under a temp folder."""

from __future__ import annotations

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
                   timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m torch_cookbook ARGS` in a fresh process (for crashes, signals and torchrun)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "torch_cookbook", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd or REPO, timeout=timeout)


def only_run_dir(root: Path, recipe: str) -> Path:
    dirs = sorted((root / recipe).iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())

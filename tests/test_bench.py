"""`cookbook bench`: aggregation (mean, sample std, verdicts), one code per result, a clean tree, the index."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from pathlib import Path

import pytest

from conftest import run_subprocess
from torch_cookbook import bench
from torch_cookbook.engine import runs as runs_module
from torch_cookbook.errors import CookbookError

CODE = {"commit": "abc1234", "dirty": False, "src_sha256": "0" * 64}


def seed_run(seed: int, metrics: dict, **code) -> dict:
    return {"seed": seed, "metrics": metrics, **CODE, **code}


def test_aggregate_mean_sample_std_and_verdicts():
    runs = [seed_run(0, {"acc": 0.9, "loss": 1.0}), seed_run(1, {"acc": 0.8, "loss": None}),
            seed_run(2, {"acc": 0.7, "loss": math.nan})]
    result = bench.aggregate(runs, [("acc", ">=", 0.7), ("acc", ">=", 0.75), ("loss", "<=", 2.0),
                                    ("never_logged", ">=", 0.0)])
    assert result["mean"]["acc"] == pytest.approx(0.8)
    assert result["std"]["acc"] == pytest.approx(0.1)  # n-1: the population std would be 0.0816
    assert result["std"]["acc"] == pytest.approx(statistics.stdev([0.9, 0.8, 0.7])) and result["std_ddof"] == 1
    assert result["mean"]["loss"] == 1.0 and "loss" not in result["std"]  # one measuring seed: no std
    assert result["unmeasured"] == {"loss": [1, 2]}
    verdicts = [t["met_all_seeds"] for t in result["targets"]]
    # met on every seed; missed on seed 2; unmeasured (None, NaN) is not met; never measured is not met
    assert verdicts == [True, False, False, False]
    assert result["targets"][0] == {"metric": "acc", "op": ">=", "value": 0.7, "met_all_seeds": True}


def test_aggregate_lower_is_better_and_one_seed():
    result = bench.aggregate([seed_run(0, {"fid": 20.0})], [("fid", "<=", 25.0), ("fid", "<=", 10.0)])
    assert result["mean"] == {"fid": 20.0} and result["std"] == {}
    assert [t["met_all_seeds"] for t in result["targets"]] == [True, False]


def test_a_target_the_runs_did_not_judge_gets_no_verdict():
    skipped = {"metric": "dice", "op": ">=", "value": 0.9, "met": None, "for": {"data": ""}}
    runs = [{**seed_run(s, {"dice": 0.5}), "targets": [skipped]} for s in (0, 1)]  # runs on a user's --data
    verdict = bench.aggregate(runs, [("dice", ">=", 0.9)])["targets"][0]
    assert verdict["met_all_seeds"] is None and verdict["for"] == {"data": ""}
    assert bench.verdict_text(verdict) == "not judged"


def test_a_target_across_seeds_is_judged_once_on_the_pooled_figure_or_the_mean():
    runs = [seed_run(s, {"final": r, "errors": e}) for s, r, e in ((0, 500.0, 30), (1, 250.0, 40), (2, 500.0, 35))]
    targets = [("final", ">=", 400.0, True), ("final", ">=", 400.0), ("p_value", "<=", 0.05, True)]
    result = bench.aggregate(runs, targets, pooled={"p_value": 0.01})
    across, each, pooled = result["targets"]
    assert (across["met_all_seeds"], across["measured"], across["across_seeds"]) == (True, 416.6666666666667, True)
    assert each["met_all_seeds"] is False  # seed 1 alone misses it
    assert (pooled["measured"], pooled["met_all_seeds"], result["pooled"]) == (0.01, True, {"p_value": 0.01})
    assert bench.measured_text(result, across) == "416.7 (the seeds together)"


def test_a_pooled_figure_from_numpy_gives_a_result_json_can_write():
    """An across_seeds that returns numpy scalars (a t-interval from scipy): the result is still plain JSON."""
    import numpy as np

    runs = [{"seed": s, "metrics": {"gap": 0.04 + s / 100}} for s in range(3)]
    result = bench.aggregate(runs, [("gap", ">=", 0.05, True), ("gap", ">=", 0.0)], {"gap": np.float64(0.049)})
    assert json.loads(json.dumps(result))["targets"][0] == {"metric": "gap", "op": ">=", "value": 0.05,
                                                          "met_all_seeds": False, "across_seeds": True,
                                                          "measured": 0.049}
    assert type(result["targets"][0]["met_all_seeds"]) is bool and type(result["pooled"]["gap"]) is float


def test_one_run_leaves_a_target_across_seeds_to_bench():
    from torch_cookbook.engine.config import Target, verdict

    judged = runs_module._judged(Target("final", ">=", 400.0, across_seeds=True), object(), {"final": 500.0})
    assert judged == {"met": None, "across_seeds": True}
    assert verdict(judged) == "judged across seeds by `cookbook bench`"


def test_seeds_from_different_commits_are_refused():
    same = [seed_run(0, {}), seed_run(1, {})]
    bench.check_one_code("x", same, CODE)  # one commit, one hash: fine
    with pytest.raises(CookbookError, match="did not all run on the code") as e:
        bench.check_one_code("x", [seed_run(0, {}), seed_run(1, {}, commit="def5678")], CODE)
    assert "\n" not in str(e.value) and "def5678" in str(e.value)
    with pytest.raises(CookbookError, match="did not all run on the code"):  # same commit, other files (dirty)
        bench.check_one_code("x", [seed_run(0, {}, src_sha256="1" * 64), seed_run(1, {})], CODE)
    with pytest.raises(CookbookError, match="changed during seed 1"):
        bench.check_one_code("x", [seed_run(0, {}), seed_run(1, {}, src_sha256_at_end="2" * 64)], CODE)


def test_dirty_tree_is_refused_without_allow_dirty(cli, tmp_path, monkeypatch):
    paths = ["src/torch_cookbook/bench.py", "README.md", "a", "b", "c", "d"]
    monkeypatch.setattr(bench, "dirty_paths", lambda: paths)
    code, _, err = cli("bench", "regression", "--out", tmp_path / "results", "--runs-root", tmp_path / "runs")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "src/torch_cookbook/bench.py, README.md, a, b and 2 more" in lines[0] and "--allow-dirty" in lines[0]
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()
    bench.check_clean_tree(allow_dirty=True)  # told otherwise: no refusal


def test_code_version_identifies_commit_dirty_tree_and_copies(tmp_path, monkeypatch):
    package = tmp_path / "repo" / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "junk.pyc").write_bytes(b"ignored")
    monkeypatch.setattr(runs_module, "PACKAGE_DIR", package)
    outside = runs_module.code_version()  # not in a git repository: an installed copy
    assert outside["commit"] == "unknown" and outside["dirty"] is None

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path / "repo",
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "repo" / ".gitignore").write_text("__pycache__/\n")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    clean = runs_module.code_version()
    assert clean["dirty"] is False and clean["commit"] != "unknown"
    assert clean["src_sha256"] == outside["src_sha256"]  # the same files hash the same, checkout or copy
    (package / "new.py").write_text("y = 2\n")  # a new module in the package is part of the code
    assert runs_module.dirty_paths() == ["src/pkg/new.py"]
    untracked = runs_module.code_version()
    assert untracked["dirty"] is True and untracked["src_sha256"] != clean["src_sha256"]
    (package / "new.py").unlink()
    (tmp_path / "repo" / "README.md").write_text("docs\n")  # untracked outside the package: not dirty
    assert runs_module.code_version() == clean
    (package / "__init__.py").write_text("x = 2\n")
    changed = runs_module.code_version()
    assert changed["dirty"] is True and changed["commit"] == clean["commit"]
    assert changed["src_sha256"] not in (clean["src_sha256"], untracked["src_sha256"])
    assert runs_module.dirty_paths() == ["src/pkg/__init__.py"]


def test_a_run_records_the_code_it_started_on(tmp_path, monkeypatch):
    import torch

    from torch_cookbook import recipes

    cfg = recipes.get("regression").config("smoke")
    monkeypatch.setattr(runs_module, "code_version", lambda: dict(CODE))
    run = runs_module.Run.create("regression", cfg, "smoke", torch.device("cpu"), root=tmp_path)
    assert json.loads((run.dir / "config.json").read_text())["code"] == CODE
    moved = {"commit": "def5678", "dirty": True, "src_sha256": "f" * 64}
    monkeypatch.setattr(runs_module, "code_version", lambda: moved)  # the tree moves while the run trains
    summary = json.loads(json.dumps(run.write_summary({"x": 1.0}, [])))
    assert {k: summary[k] for k in CODE} == CODE  # labelled with the code it started on
    assert summary["src_sha256_at_end"] == "f" * 64  # and the move is recorded, so bench refuses it


def test_bench_runs_seeds_side_by_side_and_records_resources(tmp_path):
    out = tmp_path / "results"
    # --allow-dirty: the test must pass in a working tree with uncommitted changes too (CI's clone is clean)
    proc = run_subprocess("bench", "regression", "--profile", "smoke", "--seeds", "2", "--jobs", "2",
                          "--threads", "1", "--out", out, "--runs-root", tmp_path / "runs", "--allow-dirty",
                          "--", "--steps", "70")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "regression.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    assert result["run_flags"][-2:] == ["--steps", "70"]  # flags after `--` reach every run and are recorded
    for run in result["runs"]:
        assert json.loads((Path(run["run_dir"]) / "config.json").read_text())["config"]["steps"] == 70
    for run in result["runs"]:
        assert run["cpu_time_s"] > 0 and run["peak_rss_mb"] > 50  # a torch process is never smaller
        assert run["steps_per_s"] > 0  # from the perf/steps_per_s records the engine adds to every log
        assert (run["commit"], run["src_sha256"]) == (result["commit"], result["src_sha256"])
    assert result["jobs"] == 2 and isinstance(result["dirty"], bool) and result["std_ddof"] == 1
    assert isinstance(result["machine"]["isa"], list)
    assert result["std"]
    for key, std in result["std"].items():  # every mean and std recomputes from the runs
        values = [r["metrics"][key] for r in result["runs"]]
        assert result["mean"][key] == pytest.approx(statistics.fmean(values))
        assert std == pytest.approx(statistics.stdev(values))
    index = (tmp_path / "README.md").read_text()
    assert "| regression | smoke | 2 |" in index and "peak RSS" in index and "steps/s" in index
    assert f"| {result['commit']} src {result['src_sha256'][:8]}{' dirty' if result['dirty'] else ''} |" in index


def test_bench_index_shows_hardware_files_beside_recipe_results(tmp_path):
    from torch_cookbook.bench import cpu_features, write_index

    results = tmp_path / "results"
    results.mkdir()
    machine = {"cpu": "Test CPU", "cores": 2, "device": "cpu", "torch": "x", "isa": ["avx2"]}
    (results / "matmul.json").write_text(json.dumps(
        {"n": 2048, "threads": 2, "device": "cpu", "machine": machine, "gflops": {"fp32": 190.0, "bf16": 0.3}}))
    rows = [
        {"model": "MLP", "batch": 128, "variant": "eager", "mflop_per_step": 104.7, "ms_per_step": 1.2,
         "samples_per_s": 100000, "gflops": 85.5, "fraction_of_ceiling": 0.5},
        {"model": "MLP", "batch": 128, "variant": "compile", "error": "RuntimeError: no compiler"}]
    (results / "throughput.json").write_text(json.dumps(
        {"threads": 2, "ceiling_gflops": 171.0, "machine": machine, "rows": rows}))
    (results / "profile.json").write_text(json.dumps({"kind": "profile", "machine": machine, "recipes": {"dqn": {
        "wall_s": 12.4, "data_share": 0.0, "optimizer_share": 0.05, "backward_share": 0.1, "torch_ops_share": 0.3,
        "outside_ops_share": 0.7, "top_ops": [{"op": "aten::addmm", "share": 0.08}]}, "gan": {
        "wall_s": 40.2, "recorded": "3 windows of 8 of every 50 optimizer steps", "recorded_s": 1.25,
        "data_share": 0.01, "optimizer_share": 0.1, "backward_share": 0.4, "torch_ops_share": 0.8,
        "outside_ops_share": 0.2, "top_ops": []}}}))
    recipe_result = {"recipe": "regression", "profile": "full", "seeds": [0, 1, 2], "runs": [{}], "wall_time_s":
                     {"mean": 10.0}, "machine": machine, "commit": "abc1234", "dirty": True, "std_ddof": 1,
                     "mean": {"mse": 0.5, "r2": 0.4}, "std": {"mse": 0.01},
                     "targets": [{"metric": "mse", "op": "<=", "value": 0.6, "met_all_seeds": True},
                                 {"metric": "r2", "op": ">=", "value": 0.3, "met_all_seeds": True},
                                 {"metric": "gone", "op": ">=", "value": 1.0, "met_all_seeds": False}]}
    (results / "regression.json").write_text(json.dumps(recipe_result))
    gpu = tmp_path / "gpu" / "h200-2026-12-04"
    gpu.mkdir(parents=True)
    gpu_machine = {**machine, "device": "NVIDIA H200"}
    (gpu / "amp.json").write_text(json.dumps(  # recorded before std_ddof: its std divides by n
        {"recipe": "amp", "seeds": [0, 1], "run_flags": ["--threads", "0", "--device", "cuda"], "machine": gpu_machine,
         "runs": [], "mean": {"perf/gpu_autocast_speedup": 1.3}, "std": {"perf/gpu_autocast_speedup": 0.01},
         "targets": [{"metric": "perf/gpu_autocast_speedup", "op": ">=", "value": 2.0, "met_all_seeds": False}]}))
    (gpu / "throughput.json").write_text(json.dumps({"machine": gpu_machine, "rows": rows}))
    write_index(results)  # recipe-less files must not be read as recipe results
    index = (tmp_path / "README.md").read_text()
    assert "| mean ± std (n−1) |" in index and "sample standard deviation" in index
    row = "| regression | full | 3 | mse <= 0.6 | 0.5 ± 0.01 | yes | 10 | - | - | - | - | - | Test CPU (2 cores; avx2)"
    assert row in index and "| abc1234 dirty |" in index
    assert "| r2 >= 0.3 | 0.4 | yes |" in index and "| gone >= 1 | - | NO |" in index
    assert "## Measured on a GPU: h200-2026-12-04" in index and "NVIDIA H200, Test CPU (2 cores)" in index
    assert "| amp `--device cuda` | 2 | perf/gpu_autocast_speedup >= 2 | 1.3 ± 0.01 (n) | NO | amp.json |" in index
    assert "| MLP, batch 128, eager | - | ms/step | 1.20 | - | throughput.json |" in index
    assert "fp32 190.0 GFLOP/s, bf16 0.3 GFLOP/s" in index and "avx2" in index
    assert "| MLP | 128 | eager | 104.7 | 1.20 | 100000 | 85.5 | 50% |" in index
    assert "| MLP | 128 | compile | failed: RuntimeError: no compiler |" in index
    assert "| dqn | 12 | whole run | 0.0% | 5.0% | 10.0% | 30% | 70% | aten::addmm (8%) |" in index
    assert "| gan | 40 | 1.2 s, 3 windows of 8 of every 50 optimizer steps | 1.0% | 10.0% | 40.0% | 80% | 20% | - |" \
        in index
    assert all(isinstance(f, str) for f in cpu_features())


def test_isa_flags_are_read_on_x86_and_arm():
    assert bench.cpu_features({"flags": "fpu avx2 fma avx512f avx512_bf16 amx_tile"}) == \
        ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"]
    assert bench.cpu_features({"Features": "fp asimd sve bf16"}) == ["asimd", "sve", "bf16"]
    assert bench.cpu_features({}) == []
    assert set(bench.machine()) >= {"cpu", "cores", "device", "torch", "isa"}


def test_gpu_bench_results_go_beside_the_cpu_results_not_over_them():
    import time

    from torch_cookbook.bench import default_results_dir

    results = Path("benchmarks/results")
    assert default_results_dir("cpu (x86_64, 1 threads)", results) == results
    day = time.strftime("%Y-%m-%d")
    assert default_results_dir("cuda (NVIDIA H200)", results) == Path(f"benchmarks/gpu/h200-{day}")
    rtx = default_results_dir("cuda (NVIDIA GeForce RTX 4090)", results)
    assert rtx == Path(f"benchmarks/gpu/geforce-rtx-4090-{day}")

"""CLI: bad input ends in one line and exit code 2 with nothing written; config flags round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_subprocess
from torch_cookbook import recipes


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "nosuchrecipe"], "unknown recipe 'nosuchrecipe'"),
        (["run", "batchnorm", "--lr", "abc"], "'abc' is not a number"),
        (["run", "batchnorm", "--lr", "-1"], "--lr -1.0: out of range, allowed (0, inf)"),
        (["run", "batchnorm", "--steps", "2.5"], "'2.5' is not an integer"),
        (["run", "batchnorm", "--momentum", "1"], "--momentum 1.0: out of range, allowed [0, 1)"),
        (["run", "batchnorm", "--amp", "fp8"], "--amp fp8: not one of the allowed values (off, bf16, fp16)"),
        (["run", "batchnorm", "--profile", "huge"], "invalid choice: 'huge'"),
        (["run", "batchnorm", "--stepz", "3"], "unknown option --stepz 3; did you mean --steps?"),
        (["run", "batchnorm", "--device", "cuda"], None),  # error only where CUDA is absent
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["eval", "/nonexistent/run"], "run directory /nonexistent/run does not exist"),
        (["bench", "regression", "--jobs", "0"], "--jobs 0: must be at least 1"),
        (["bench", "regression", "--", "--stepz", "3"], "unknown option --stepz 3; did you mean --steps?"),
        (["bench", "regression", "--", "--lr", "-1"], "--lr -1.0: out of range, allowed (0, inf)"),
        (["bench", "regression", "--", "--seed", "3"], "--seed after --: bench sets it for every run itself"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(cli, tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    import torch

    if expected is None:
        if torch.cuda.is_available():
            pytest.skip("CUDA is present here")
        expected = "no CUDA device is available here"
    code, out, err = cli(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert not (tmp_path / "runs").exists()


def test_every_config_field_is_a_flag_with_help(cli):
    code, out, _ = cli("run", "batchnorm", "--help")
    assert code == 0
    recipe = recipes.get("batchnorm")
    for f in __import__("dataclasses").fields(recipe.Config):
        assert f"--{f.name}" in out


def test_flags_override_profile_which_overrides_defaults():
    recipe = recipes.get("batchnorm")
    cfg = recipe.config("smoke", {"lr": 0.05})
    assert cfg.lr == 0.05
    assert cfg.steps == recipe.module.profiles["smoke"]["steps"]
    assert recipe.config("full").steps == recipe.Config().steps


def test_every_recipe_honours_the_contract():
    for r in recipes.all_recipes():
        assert set(r.module.profiles) == {"smoke", "quick", "full"}, r.name
        for profile in ("smoke", "quick", "full"):
            r.config(profile)  # every profile is a valid config
        assert r.targets and r.seed_question.startswith("Q"), r.name
        for f in __import__("dataclasses").fields(r.Config):
            assert f.metadata.get("help"), f"{r.name}.{f.name} has no help text"


def test_list_shows_every_recipe(cli):
    code, out, _ = cli("list")
    assert code == 0
    for name in recipes.names():
        assert name in out


@pytest.mark.parametrize("values, expected", [([], "give at least one of"), (["adam", "adam"], "a value is repeated")])
def test_list_choices_are_a_selection(values, expected):
    from torch_cookbook.errors import ConfigError

    with pytest.raises(ConfigError, match=expected):
        recipes.get("optimizers").config("smoke", {"optimizers": values})


def test_bench_runs_seeds_side_by_side_and_records_resources(tmp_path):
    out = tmp_path / "results"
    proc = run_subprocess("bench", "regression", "--profile", "smoke", "--seeds", "2", "--jobs", "2",
                          "--threads", "1", "--out", out, "--runs-root", tmp_path / "runs", "--", "--steps", "70")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "regression.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    assert result["run_flags"][-2:] == ["--steps", "70"]  # flags after `--` reach every run and are recorded
    for run in result["runs"]:
        assert json.loads((Path(run["run_dir"]) / "config.json").read_text())["config"]["steps"] == 70
    for run in result["runs"]:
        assert run["cpu_time_s"] > 0 and run["peak_rss_mb"] > 50  # a torch process is never smaller
        assert run["steps_per_s"] > 0  # from the perf/steps_per_s records the engine adds to every log
    assert result["jobs"] == 2
    index = (tmp_path / "README.md").read_text()
    assert "| regression | smoke | 2 |" in index and "peak RSS" in index and "steps/s" in index



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
    gpu = tmp_path / "gpu" / "h200-2026-12-04"
    gpu.mkdir(parents=True)
    gpu_machine = {**machine, "device": "NVIDIA H200"}
    (gpu / "amp.json").write_text(json.dumps(
        {"recipe": "amp", "seeds": [0, 1], "run_flags": ["--threads", "0", "--device", "cuda"], "machine": gpu_machine,
         "runs": [], "mean": {"perf/gpu_autocast_speedup": 1.3}, "std": {"perf/gpu_autocast_speedup": 0.01},
         "targets": [{"metric": "perf/gpu_autocast_speedup", "op": ">=", "value": 2.0, "met_all_seeds": False}]}))
    (gpu / "throughput.json").write_text(json.dumps({"machine": gpu_machine, "rows": rows}))
    write_index(results)  # recipe-less files must not be read as recipe results
    index = (tmp_path / "README.md").read_text()
    assert "## Measured on a GPU: h200-2026-12-04" in index and "NVIDIA H200, Test CPU (2 cores)" in index
    assert "| amp `--device cuda` | 2 | perf/gpu_autocast_speedup >= 2 | 1.3 ± 0.01 | NO | amp.json |" in index
    assert "| MLP, batch 128, eager | - | ms/step | 1.20 | - | throughput.json |" in index
    assert "fp32 190.0 GFLOP/s, bf16 0.3 GFLOP/s" in index and "avx2" in index
    assert "| MLP | 128 | eager | 104.7 | 1.20 | 100000 | 85.5 | 50% |" in index
    assert "| MLP | 128 | compile | failed: RuntimeError: no compiler |" in index
    assert "| dqn | 12 | whole run | 0.0% | 5.0% | 10.0% | 30% | 70% | aten::addmm (8%) |" in index
    assert "| gan | 40 | 1.2 s, 3 windows of 8 of every 50 optimizer steps | 1.0% | 10.0% | 40.0% | 80% | 20% | - |" \
        in index
    assert all(isinstance(f, str) for f in cpu_features())


def test_gpu_bench_results_go_beside_the_cpu_results_not_over_them():
    import time

    from torch_cookbook.bench import default_results_dir

    results = Path("benchmarks/results")
    assert default_results_dir("cpu (x86_64, 1 threads)", results) == results
    day = time.strftime("%Y-%m-%d")
    assert default_results_dir("cuda (NVIDIA H200)", results) == Path(f"benchmarks/gpu/h200-{day}")
    rtx = default_results_dir("cuda (NVIDIA GeForce RTX 4090)", results)
    assert rtx == Path(f"benchmarks/gpu/geforce-rtx-4090-{day}")

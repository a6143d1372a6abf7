"""The batchnorm recipe end to end on its smoke profile, its eval, its crash/resume, and BN's modes."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import only_run_dir, read_summary, run_subprocess
from torch_cookbook.cli import main
from torch_cookbook.recipes.batchnorm import make_cnn, train_vs_eval_mode


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    from torch_cookbook.cli import main

    assert main(["run", "batchnorm", "--profile", "smoke", "--runs-root", str(root), "--threads", "2"]) == 0
    return only_run_dir(root, "batchnorm")


def test_smoke_run_writes_a_complete_run_directory(smoke_run):
    for rel in ("config.json", "summary.json", "plots/learning_curves.png", "tb"):
        assert (smoke_run / rel).exists(), rel
    summary = read_summary(smoke_run)
    keys = {"recipe", "profile", "seed", "metrics", "targets", "wall_time_s", "device", "torch", "commit"}
    assert keys <= set(summary)
    assert summary["profile"] == "smoke"
    for name in ("plain", "bn", "plain_10x", "bn_10x"):
        variant = smoke_run / "variants" / name
        assert (variant / "checkpoints" / "last.pt").exists()
        records = [json.loads(line) for line in (variant / "metrics.jsonl").read_text().splitlines()]
        assert records and all("eval/accuracy" in r for r in records)
    # BN learns much faster than the plain CNN even in 30 steps
    m = summary["metrics"]
    assert m["bn_final_accuracy"] > m["plain_final_accuracy"] + 0.2


def test_eval_reproduces_the_summary(smoke_run, cli):
    code, out, _ = cli("eval", smoke_run)
    assert code == 0
    result = json.loads(out)
    for key, value in result["metrics"].items():
        assert value == pytest.approx(result["summary_metrics"][key], abs=1e-6), key


def test_killed_run_resumes_to_the_same_metrics(smoke_run, tmp_path):
    """SIGKILL in the middle of the second variant, resume: the same final metrics as uninterrupted."""
    args = ["run", "batchnorm", "--profile", "smoke", "--runs-root", tmp_path, "--threads", "2",
            "--checkpoint-every", "5"]
    crashed = run_subprocess(*args, env={"COOKBOOK_CRASH_AT_STEP": "17"})
    assert crashed.returncode == -9, crashed.stderr
    run_dir = only_run_dir(tmp_path, "batchnorm")
    assert not (run_dir / "summary.json").exists()
    assert main(["run", "--resume", str(run_dir), "--threads", "2"]) == 0  # in-process: only the kill needs one
    assert read_summary(run_dir)["metrics"] == read_summary(smoke_run)["metrics"]


def test_bn_train_mode_uses_batch_statistics():
    torch.manual_seed(0)
    model = make_cnn(batchnorm=True, width=4)
    x = torch.randn(64, 1, 28, 28) * 3 + 1
    model.train()
    for _ in range(5):  # move the running statistics towards this data
        model(x)
    model.eval()
    out_eval = model(x[:8])
    bn = model[1]
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    # In eval mode a sample's output does not depend on the rest of its batch; in train mode it does.
    assert torch.allclose(model(x[:1]), out_eval[:1], atol=1e-5)
    model.train()
    assert not torch.allclose(model(x[:2])[:1], model(x[:8])[:1], atol=1e-4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    metrics = train_vs_eval_mode(model, x, torch.zeros(64, dtype=torch.long), 16, torch.device("cpu"))
    assert set(metrics) == {"bn_eval_mode_accuracy", "bn_train_mode_accuracy_bs16", "bn_running_mean_gap"}
    for k, v in model.state_dict().items():  # the demonstration leaves the running statistics untouched
        assert torch.equal(v, before[k]), k

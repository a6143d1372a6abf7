"""DDP under torchrun on CPU: 2 gloo processes on loopback equal 1 process, rank-0 I/O, bad launches.

Every torchrun call has a timeout and `--max-restarts 0`, so a failing test cannot leave processes behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from conftest import REPO, only_run_dir, read_summary
from torch_cookbook.engine import distributed as dist
from torch_cookbook.nn.mlp import make_mlp
from torch_cookbook.nn.pipeline import TwoDevicePipeline, split_stages

LOOPBACK = {**os.environ, "PYTHONUNBUFFERED": "1", "GLOO_SOCKET_IFNAME": "lo", "COOKBOOK_DIST_TIMEOUT": "60"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2, extra: tuple[str, ...] = (), env: dict | None = None,
             timeout: float = 300, max_restarts: int = 0) -> subprocess.CompletedProcess:
    endpoint = () if "--rdzv-endpoint" in extra else ("--master-addr", "127.0.0.1", "--master-port", str(free_port()))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--max-restarts", str(max_restarts), *endpoint, *extra,
           "-m", "torch_cookbook", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**LOOPBACK, **(env or {})},
                          timeout=timeout)


# ---- pure helpers --------------------------------------------------------------------------------
def test_rank_shards_together_are_the_single_process_batch():
    """W ranks with B/W each see exactly the examples 1 process sees with B, step by step, across epochs."""
    n, batch = 50, 8
    single = dist.sharded_minibatches(n, batch, seed=3, rank_=0, size=1)
    ranks = [dist.sharded_minibatches(n, batch, seed=3, rank_=r, size=2) for r in range(2)]
    epochs = set()
    for _ in range(15):  # 6 steps per epoch: crosses two epoch boundaries
        step, epoch, idx = next(single)
        parts = [next(r) for r in ranks]
        assert all(p[0] == step and p[1] == epoch for p in parts)
        assert all(len(p[2]) == batch // 2 for p in parts)
        assert sorted(torch.cat([p[2] for p in parts]).tolist()) == sorted(idx.tolist())
        epochs.add(epoch)
    assert epochs == {0, 1, 2}
    # set_epoch changes the order from one epoch to the next (the classic forgotten call)
    assert not torch.equal(dist.epoch_indices(n, 3, 0, 0, 2), dist.epoch_indices(n, 3, 1, 0, 2))
    # and resuming at a step gives the same batches as running up to it
    resumed = next(dist.sharded_minibatches(n, batch, seed=3, start_step=14, rank_=1, size=2))
    assert resumed[0] == 14 and torch.equal(resumed[2], parts[1][2])


def test_batch_must_split_evenly_over_ranks():
    assert dist.check_divisible(128, 2) == 64
    with pytest.raises(dist.ConfigError, match="--batch_size 127: not divisible by the world size 2"):
        dist.check_divisible(127, 2)


def test_two_device_pipeline_matches_the_unsplit_model():
    torch.manual_seed(0)
    model = make_mlp((28 * 28, 16, 16, 10))  # the recipe's model at hidden 16
    reference = make_mlp((28 * 28, 16, 16, 10))
    reference.load_state_dict(model.state_dict())
    x, y = torch.rand(12, 1, 28, 28), torch.randint(0, 10, (12,))
    pipe = TwoDevicePipeline(*split_stages(model, 3), devices=("cpu", "cpu"), chunks=4)
    out = pipe(x)
    ref_out = reference(x)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    torch.nn.functional.cross_entropy(out, y).backward()
    torch.nn.functional.cross_entropy(ref_out, y).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="split point"):
        split_stages(model, 0)


# ---- the recipe: 1 process vs 2 processes under torchrun -------------------------------------------
@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("ddp1")
    assert main(["run", "ddp", "--profile", "smoke", "--runs-root", str(root), "--threads", "1"]) == 0
    return only_run_dir(root, "ddp")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """torchrun, 2 gloo ranks, each with batch 64 as 2 accumulated micro-batches of 32 (no_sync on the first)."""
    root = tmp_path_factory.mktemp("ddp2")
    proc = torchrun("run", "ddp", "--profile", "smoke", "--runs-root", root, "--threads", "1", "--accum_steps", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return only_run_dir(root, "ddp"), proc


def test_two_processes_end_with_the_same_parameters_as_one(one_process, two_processes):
    run2, _ = two_processes
    p1 = torch.load(one_process / "checkpoints" / "last.pt", weights_only=True)["state"]["model"]
    p2 = torch.load(run2 / "checkpoints" / "last.pt", weights_only=True)["state"]["model"]
    assert p1.keys() == p2.keys() and not any(k.startswith("module.") for k in p2)  # unwrapped for checkpoints
    init = make_mlp((28 * 28, 64, 64, 10))  # the smoke profile's model, freshly initialised
    for k in p1:
        torch.testing.assert_close(p2[k], p1[k], rtol=0, atol=1e-5)
    assert (p1["1.weight"] - init.state_dict()["1.weight"]).abs().max() > 1e-3  # training did move them
    m1, m2 = read_summary(one_process)["metrics"], read_summary(run2)["metrics"]
    assert m2["world_size"] == 2 and m2["per_rank_batch"] == 64
    assert m2["test_accuracy"] == pytest.approx(m1["test_accuracy"], abs=2e-3)
    # the in-run checks used the live 2-rank group: DDP vs one process, and the send/recv pipeline
    assert m2["check_world_size"] == 2
    assert m2["equivalence_max_abs_diff"] <= 1e-5
    assert m2["pipeline_p2p_max_abs_diff"] <= 1e-5


def test_only_rank_0_prints_and_writes(two_processes):
    run_dir, proc = two_processes
    assert proc.stdout.count("ddp (smoke profile") == 1
    assert proc.stdout.count("target test_accuracy") == 1
    assert len(list(run_dir.parent.iterdir())) == 1
    assert (run_dir / "elastic.json").exists() and (run_dir / "plots" / "learning_curves.png").exists()
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    steps = [int(r.split('"step": ')[1].split(",")[0]) for r in records]
    assert steps == sorted(set(steps)), "each step logged once (by rank 0)"


# ---- bad launches: one line from rank 0, every rank exits, nothing hangs ------------------------------
def test_batch_not_divisible_by_world_size(tmp_path):
    proc = torchrun("run", "ddp", "--profile", "smoke", "--runs-root", tmp_path, "--threads", "1",
                    "--batch_size", "127", timeout=180)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("cookbook: error:")]
    assert ours == ["cookbook: error: --batch_size 127: not divisible by the world size 2; "
                    "use a multiple of 2 (for example 126)"]
    assert not (tmp_path / "ddp").exists()  # checked before the run directory is created


def test_missing_rendezvous_endpoint(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    code, _, err = cli("run", "ddp", "--profile", "smoke", "--runs-root", tmp_path)
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert "MASTER_ADDR, MASTER_PORT not set: no rendezvous endpoint" in err
    assert not (tmp_path / "ddp").exists()


def test_nccl_without_gpus(cli, tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    code, _, err = cli("run", "ddp", "--profile", "smoke", "--runs-root", tmp_path, "--backend", "nccl")
    assert code == 2
    assert err.strip() == ("cookbook: error: --backend nccl: NCCL needs CUDA GPUs and no CUDA GPU is available "
                           "here; use --backend gloo (or auto)")


def test_nobody_at_the_endpoint_times_out_with_one_line(cli, tmp_path, monkeypatch):
    """Rank 0 of a 2-process group whose rank 1 never comes: a bounded wait, then one line."""
    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
                       "COOKBOOK_DIST_TIMEOUT": "3"}.items():
        monkeypatch.setenv(key, value)
    code, _, err = cli("run", "ddp", "--profile", "smoke", "--runs-root", tmp_path)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "could not join the process group at 127.0.0.1:" in err
    assert not dist.is_distributed()


# ---- beyond one launch: elastic restart and two "nodes" on localhost (slow) ----------------------------
def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not (k.endswith("_s") or k.endswith("_per_s"))}


@pytest.mark.slow
def test_elastic_restart_resumes_to_the_same_metrics(two_processes, tmp_path):
    """SIGKILL rank 1 at step 25; torchrun --max-restarts 1 restarts both ranks, which resume from the
    step-20 checkpoint in the same run directory and finish with the uninterrupted run's metrics."""
    uninterrupted, _ = two_processes
    proc = torchrun("run", "ddp", "--profile", "smoke", "--runs-root", tmp_path, "--threads", "1",
                    "--accum_steps", "2", "--checkpoint_every", "10", max_restarts=1,
                    extra=("--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
                           "--rdzv-id", "elastic-test"),
                    env={"COOKBOOK_DDP_KILL": "1:25"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exitcode: -9" in proc.stderr  # the worker really died
    run_dir = only_run_dir(tmp_path, "ddp")  # the restarted group continued the same run directory
    assert proc.stdout.count(f"{run_dir}") == 2
    assert comparable(read_summary(run_dir)["metrics"]) == comparable(read_summary(uninterrupted)["metrics"])


@pytest.mark.slow
def test_two_simulated_nodes_meet_through_c10d_rendezvous(one_process, tmp_path):
    """Two torchrun launchers, one per simulated node (--nnodes 2, 1 process each), on 127.0.0.1."""
    port = free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes",
           "--max-restarts", "0", "-m", "torch_cookbook", "run", "ddp", "--profile", "smoke",
           "--runs-root", str(tmp_path), "--threads", "1"]
    nodes = [subprocess.Popen(cmd, cwd=REPO, env=LOOPBACK, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        outs = [node.communicate(timeout=600) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    assert [node.returncode for node in nodes] == [0, 0], [o[1][-2000:] for o in outs]
    run_dir = only_run_dir(tmp_path, "ddp")
    metrics = read_summary(run_dir)["metrics"]
    assert metrics["world_size"] == 2
    assert metrics["test_accuracy"] == pytest.approx(read_summary(one_process)["metrics"]["test_accuracy"], abs=2e-3)
    assert sum(o[0].count("ddp (smoke profile") for o in outs) == 1  # only global rank 0 prints

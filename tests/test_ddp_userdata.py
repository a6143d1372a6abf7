"""Data parallel on a user's data under torchrun: textclass on a CSV and transfer on class folders (2 gloo processes on
loopback = 1 process to 1e-5, rank-0 I/O, an elastic restart resumes the run), and `CpuSyncBatchNorm` in a 2-process
gloo group = BatchNorm on the whole batch. Heavy imports stay inside the tests: the spawned group re-imports this
module."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from torch_cookbook.engine import distributed as dist
from torch_cookbook.engine.loop import batches

# One model without randomness in training (no dropout), so 2 processes can equal 1 to 1e-5.
ARGS = ("run", "textclass", "--profile", "smoke", "--models", "bow", "--dropout", "0", "--word_dropout", "0",
        "--text_column", "review", "--label_column", "stars", "--threads", "1")
MODEL = "variants/user_bow/checkpoints"


@pytest.fixture(scope="module")
def tickets(tmp_path_factory):
    from test_textclass import write_tickets

    root = tmp_path_factory.mktemp("ddp_userdata")
    return root, write_tickets(root / "tickets.csv")  # 90 texts, 3 classes: 63 train, batches of 16


@pytest.fixture(scope="module")
def one_process(tickets):
    from conftest import only_run_dir
    from torch_cookbook.cli import main

    root, data = tickets
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COOKBOOK_CACHE", str(root / "cache"))
        assert main([*ARGS, "--data", str(data), "--runs-root", str(root / "one")]) == 0
    return only_run_dir(root / "one", "textclass")


def weights(run_dir, which="last") -> dict[str, torch.Tensor]:
    return torch.load(run_dir / MODEL / f"{which}.pt", weights_only=True)["state"]["model"]


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and not any(k.startswith("module.") for k in b)  # checkpoints hold the plain module
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def comparable(run_dir) -> dict:
    metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if not (k.endswith("_s") or k.endswith("_per_s"))}


# ---- the batches: W ranks share each global batch of the one-process order ---------------------------------
def test_rank_shards_are_the_positions_of_the_one_process_batches():
    single = batches(63, 16, seed=3, start_step=2)
    ranks = [dist.shard_batches(63, 16, seed=3, start_step=2, rank_=r, size=2) for r in range(2)]
    for _ in range(7):  # 3 batches an epoch: crosses two epoch boundaries
        whole, parts = next(single), [next(r) for r in ranks]
        assert [len(p) for p in parts] == [8, 8]
        assert torch.equal(torch.stack(parts, 1).flatten(), whole)  # rank r: positions r, r+2, r+4, ...
    assert torch.equal(next(dist.shard_batches(63, 16, 3, 0, 0, 1)), next(batches(63, 16, 3)))  # 1 process: as is
    with pytest.raises(dist.ConfigError, match="--batch_size 15: not divisible by the world size 2"):
        next(dist.shard_batches(63, 15, 3, size=2))


@pytest.mark.parametrize("flag", ["--batch_size", "--minilm_tune_batch"])
def test_a_batch_that_does_not_split_over_the_ranks_is_refused_before_anything_is_written(tickets, cli, tmp_path,
                                                                                           monkeypatch, flag):
    """Every rank runs textclass's check_launch before it joins the group (here: rank 0 of 2, no peer)."""
    root, data = tickets
    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "COOKBOOK_CACHE": str(root / "cache")}.items():
        monkeypatch.setenv(key, value)
    code, _, err = cli(*ARGS, "--data", data, flag, "15", "--runs-root", tmp_path)
    assert code == 2
    assert err.strip() == (f"cookbook: error: {flag} 15: not divisible by the world size 2; use a multiple of 2 "
                           "(for example 14)")
    assert not (tmp_path / "textclass").exists()


# ---- 2 processes = 1 process -----------------------------------------------------------------------------
def torchrun_textclass(tickets, runs: str, **kwargs):
    from test_ddp import torchrun

    from conftest import only_run_dir

    root, data = tickets
    env = {"COOKBOOK_CACHE": str(root / "cache"), **kwargs.pop("env", {})}
    proc = torchrun(*ARGS, "--data", data, "--runs-root", root / runs, timeout=300, env=env, **kwargs)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return only_run_dir(root / runs, "textclass"), proc


@pytest.fixture(scope="module")
def two_processes(tickets):
    """torchrun, 2 gloo ranks on loopback, each with 8 of each global batch of 16."""
    return torchrun_textclass(tickets, "two")


def test_two_processes_end_with_the_weights_of_one(one_process, two_processes):
    run2, _ = two_processes
    for which in ("best", "last"):
        assert max_abs_diff(weights(one_process, which), weights(run2, which)) <= 1e-5
    assert weights(one_process)["head.weight"].abs().max() > 0.1  # trained: the bag's classifier starts at zero
    assert comparable(run2) == comparable(one_process)  # the same best step, validation and test metrics


def test_only_rank_0_prints_and_writes(two_processes):
    run_dir, proc = two_processes
    assert proc.stdout.count(f"textclass (smoke profile, seed 0, cpu, 2 processes): {run_dir}") == 1
    assert proc.stdout.count("user_bow_macro_f1") == 1 and len(list(run_dir.parent.iterdir())) == 1
    assert (run_dir / "tokenizer_user.json").exists() and (run_dir / "plots" / "learning_curves.png").exists()
    records = [json.loads(line) for line in (run_dir / "variants/user_bow/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [8, 16]  # each logged once, by rank 0


@pytest.mark.slow
def test_an_elastic_restart_resumes_to_the_weights_of_one_process(one_process, tickets):
    """Both ranks SIGKILLed at their 12th step (a checkpoint holds step 8): torchrun --max-restarts 1 restarts the
    group, which finds its unfinished run directory, resumes it and ends where one process ends."""
    from test_ddp import free_port

    run_dir, proc = torchrun_textclass(tickets, "elastic", max_restarts=1, env={"COOKBOOK_CRASH_AT_CALL": "12"},
                                       extra=("--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
                                              "--rdzv-id", "textclass-elastic"))
    assert "exitcode: -9" in proc.stderr  # the workers really died
    assert proc.stdout.count(f"2 processes): {run_dir}") == 2  # both attempts, one run directory
    for which in ("best", "last"):
        assert max_abs_diff(weights(one_process, which), weights(run_dir, which)) <= 1e-5
    assert comparable(run_dir) == comparable(one_process)


# ---- BatchNorm over the global batch on CPU ----------------------------------------------------------------
def reference_batchnorm(seed: int = 0) -> tuple[nn.BatchNorm2d, torch.Tensor, torch.Tensor]:
    """A BatchNorm2d with non-trivial affine weights, two float64 batches of 8 and the upstream gradients."""
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(3, momentum=0.3).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    x = torch.randn(2, 8, 3, 4, 5, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.2]).view(3, 1, 1) + 2.0
    return bn, x, torch.randn_like(x)


def batchnorm_steps(bn: nn.Module, xs: torch.Tensor, grads: torch.Tensor) -> dict[str, torch.Tensor]:
    """Two training forward/backward passes, then one in eval mode: everything BatchNorm computes."""
    out: dict[str, torch.Tensor] = {}
    for step, (x, g) in enumerate(zip(xs, grads)):
        x = x.clone().requires_grad_()
        y = bn(x)
        (y * g).sum().backward()
        out[f"out{step}"], out[f"x_grad{step}"] = y.detach(), x.grad
    out.update(weight_grad=bn.weight.grad, bias_grad=bn.bias.grad, running_mean=bn.running_mean.clone(),
               running_var=bn.running_var.clone(), batches=bn.num_batches_tracked.clone())
    bn.eval()
    out["eval_out"] = bn(xs[0]).detach()
    return out


def rank_in_group() -> dict:
    """What each rank of the spawned 2-process gloo group computes: its half of each batch through the converted
    BatchNorm (weight and bias gradients summed over the ranks, as DDP's all-reduce does up to 1/W), the first draw
    of its random stream after split_rng_per_rank, and what torch's own SyncBatchNorm does on a CPU."""
    r, w = dist.rank(), dist.world_size()
    bn, xs, grads = reference_batchnorm()
    synced = dist.convert_sync_batchnorm(nn.Sequential(bn))[0]
    out = batchnorm_steps(synced, xs[:, r::w], grads[:, r::w])  # rank r: examples r, r+W, ... of each batch
    for key in ("weight_grad", "bias_grad"):
        out[key] = dist.all_reduce_sum(out[key])
    out["kind"] = type(synced).__name__
    torch.manual_seed(0)  # every rank on the same stream, as after a recipe seeds its model with the run's seed
    dist.split_rng_per_rank()  # what wrap_ddp(..., split_rng=True) does (a first DDP costs seconds to set up)
    out["draw"] = torch.rand(4)
    try:
        nn.SyncBatchNorm(3)(torch.randn(4, 3, 2, 2))
        out["torch_sync_bn"] = "ran"
    except ValueError as e:
        out["torch_sync_bn"] = str(e)
    return out


@pytest.fixture(scope="module")
def group():
    return dist.spawn_gloo(rank_in_group, 2, timeout_s=180)


def test_cpu_sync_batchnorm_in_two_processes_equals_batchnorm_on_the_whole_batch(group):
    ref = batchnorm_steps(*reference_batchnorm())
    assert [g["kind"] for g in group] == ["CpuSyncBatchNorm"] * 2
    assert all("expected input tensor to be on GPU" in g["torch_sync_bn"] for g in group)  # why it exists
    diffs = {}
    for key in ("out0", "x_grad0", "out1", "x_grad1", "eval_out"):  # the ranks' halves, put back in order
        merged = torch.stack([g[key] for g in group], 1).flatten(0, 1)
        diffs[key] = (merged - ref[key]).abs().max().item()
    for key in ("weight_grad", "bias_grad", "running_mean", "running_var"):  # the same on every rank
        diffs[key] = max((g[key] - ref[key]).abs().max().item() for g in group)
    assert all(int(g["batches"]) == 2 for g in group)
    assert max(diffs.values()) <= 1e-5, diffs
    print(f"CpuSyncBatchNorm, 2 ranks vs BatchNorm2d, float64: max abs diff {max(diffs.values()):.1e}")


def test_split_rng_gives_each_rank_its_own_stream_and_one_process_keeps_its_own(group):
    assert not torch.equal(group[0]["draw"], group[1]["draw"])
    torch.manual_seed(0)
    expected = torch.rand(4)
    model = nn.Linear(2, 2)
    torch.manual_seed(0)
    assert dist.wrap_ddp(model, torch.device("cpu"), split_rng=True) is model  # no process group: nothing changes
    assert torch.equal(torch.rand(4), expected)


def test_convert_sync_batchnorm_keeps_the_parameters_and_is_batchnorm_in_one_process():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.BatchNorm1d(6)))
    x = torch.randn(5, 3, 6, 6)
    expected = model(x).detach()
    bn, weight, running_mean = model[1], model[1].weight, model[1].running_mean
    converted = dist.convert_sync_batchnorm(model)
    assert isinstance(converted[1], dist.CpuSyncBatchNorm) and isinstance(converted[3][2], dist.CpuSyncBatchNorm)
    assert converted[1].weight is weight and converted[1].running_mean is running_mean  # the same tensors
    assert int(converted[1].num_batches_tracked) == 1 and not isinstance(bn, dist.CpuSyncBatchNorm)
    assert torch.equal(converted(x), expected)  # no process group: plain BatchNorm
    assert torch.equal(converted.eval()(x), model.eval()(x))


# ---- transfer on class folders: 2 processes = 1 process --------------------------------------------------------
# ResNet-18 (no dropout; BatchNorm synchronised over the ranks), pre-trained on Fashion-MNIST for 4 steps, then each
# arm for 4 steps on 45 small images in three classes: 30 training images, global batches of 16. Small learning
# rates: a freshly initialised ResNet-18 with train-mode BatchNorm on batches of 16 is chaotic in float32 (one
# process, its gradients perturbed by 1e-6 relative noise: 1.5e-4 apart after 2 SGD steps at 0.03, 4.5e-3 after 3),
# so rounding alone would exceed 1e-5; the float64 test below shows the same training equal to 1e-12 at 0.03.
TRANSFER_ARGS = ("run", "transfer", "--profile", "smoke", "--threads", "1", "--lr", "0.001", "--scratch_lr", "0.001",
                 "--probe_lr", "0.01")
PRETRAINED_ARMS = ("probe", "finetune", "lpft")


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    from test_transfer import write_images

    root = tmp_path_factory.mktemp("ddp_transfer")
    return root, write_images(root / "images")


@pytest.fixture(scope="module")
def transfer_one_process(class_folders):
    from conftest import only_run_dir
    from torch_cookbook.cli import main

    root, data = class_folders
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COOKBOOK_CACHE", str(root / "cache"))  # the source pre-trained here is cached for the 2 processes
        assert main([*TRANSFER_ARGS, "--data", str(data), "--runs-root", str(root / "one")]) == 0
    return only_run_dir(root / "one", "transfer")


@pytest.fixture(scope="module")
def transfer_two_processes(class_folders, transfer_one_process):
    from test_ddp import torchrun

    from conftest import only_run_dir

    root, data = class_folders
    proc = torchrun(*TRANSFER_ARGS, "--data", data, "--runs-root", root / "two", timeout=300,
                    env={"COOKBOOK_CACHE": str(root / "cache")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return only_run_dir(root / "two", "transfer"), proc


def arm_state(run_dir, arm: str) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / f"variants/{arm}_10/checkpoints/last.pt", weights_only=True)["state"]["model"]


def test_transfer_in_two_processes_ends_with_the_weights_of_one(transfer_one_process, transfer_two_processes):
    run2, proc = transfer_two_processes
    assert proc.stdout.count(f"transfer (smoke profile, seed 0, cpu, 2 processes): {run2}") == 1
    for arm in PRETRAINED_ARMS:
        one, two = arm_state(transfer_one_process, arm), arm_state(run2, arm)
        weights = [k for k in one if "running" not in k and "num_batches" not in k]
        assert max((one[k] - two[k]).abs().max().item() for k in weights) <= 1e-5, arm
        stats = [k for k in one if "running" in k]  # BatchNorm's, of the global batch: activations' rounding shows
        assert max(((one[k] - two[k]).abs() / one[k].abs().clamp(min=0.1)).max().item() for k in stats) <= 1e-3, arm
        print(f"{arm}: weights {max((one[k] - two[k]).abs().max().item() for k in weights):.1e}, running statistics "
              f"{max(((one[k] - two[k]).abs() / one[k].abs().clamp(min=0.1)).max().item() for k in stats):.1e}")
    start = arm_state(transfer_one_process, "probe")["layer1.0.conv1.weight"]  # the probe leaves the backbone as is
    assert (arm_state(transfer_one_process, "finetune")["layer1.0.conv1.weight"] - start).abs().max() > 1e-6
    assert (arm_state(run2, "scratch")["fc.weight"] - arm_state(transfer_one_process, "scratch")["fc.weight"]).abs(
    ).max() <= 1e-3  # from random weights: within float32's chaos, no more
    assert comparable(run2) == comparable(transfer_one_process)  # accuracies and the method chosen on validation
    assert len(list(run2.parent.iterdir())) == 1 and (run2 / "plots/accuracy_vs_labels.png").exists()  # rank 0 wrote


def ddp_resnet18_steps(steps: int = 4, lr: float = 0.03) -> dict[str, torch.Tensor]:
    """What transfer's train_target does under torchrun, in float64: ResNet-18 from random weights (seed 0), its
    BatchNorm converted, DDP, each rank its share of every global batch of 16, SGD with momentum and weight decay."""
    import torch.nn.functional as F

    from torch_cookbook.nn.resnet import resnet18_grey

    torch.manual_seed(1)
    x, y = torch.randn(40, 1, 28, 28, dtype=torch.float64), torch.randint(0, 3, (40,))
    torch.manual_seed(0)
    model = resnet18_grey(num_classes=3).double()
    if dist.is_distributed():
        model = dist.convert_sync_batchnorm(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    trained = dist.wrap_ddp(model.train(), torch.device("cpu"), split_rng=True)
    for _, idx in zip(range(steps), dist.shard_batches(len(x), 16, seed=0)):
        optimizer.zero_grad()
        F.cross_entropy(trained(x[idx]), y[idx]).backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_ddp_resnet18_with_synced_batchnorm_equals_one_process_in_float64():
    two = dist.spawn_gloo(ddp_resnet18_steps, 2, timeout_s=180)
    one = ddp_resnet18_steps()
    for rank_state in two:
        assert max((one[k] - rank_state[k]).abs().max().item() for k in one) <= 1e-10


def lite0_features_in_shares() -> torch.Tensor:
    from torch_cookbook.recipes import transfer

    torch.manual_seed(0)
    images = torch.randint(0, 256, (13, 3, 32, 32), dtype=torch.uint8)  # 13: the ranks' shares are 7 and 6
    return transfer.frozen_features(transfer.Config(backbone="lite0", image_size=32), images, torch.device("cpu"))


def test_lite0_features_computed_in_shares_are_every_images_on_every_rank():
    two = dist.spawn_gloo(lite0_features_in_shares, 2, timeout_s=180)
    one = lite0_features_in_shares()
    assert one.shape == (13, 1280)
    for features in two:
        assert (features - one).abs().max().item() <= 1e-5


def test_lite0s_probe_on_features_computed_in_shares_equals_one_process(class_folders):
    """Lite0's probe trains its head, under DDP, on the cached features each rank computed a share of. (Its other
    arms train with dropout, whose masks differ per rank: they are not expected to equal one process.)"""
    from test_ddp import torchrun

    from conftest import only_run_dir
    from torch_cookbook.cli import main

    root, data = class_folders
    args = ("run", "transfer", "--profile", "smoke", "--threads", "1", "--backbone", "lite0", "--image_size", "32",
            "--data", str(data))
    assert main([*args, "--runs-root", str(root / "lite0_one")]) == 0
    proc = torchrun(*args, "--runs-root", root / "lite0_two", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    one, two = (arm_state(only_run_dir(root / d, "transfer"), "probe") for d in ("lite0_one", "lite0_two"))
    assert max((one[k] - two[k]).abs().max().item() for k in one) <= 1e-5

"""Reliability: Ctrl-C, crashes during a checkpoint write, non-finite gradients and fp16 overflow, damaged
data, fuzzed configs and CLI strings.

Kill/resume over every recipe lives in test_recipe_contract.py (one kill point, smoke profiles, in CI) and
test_reliability_matrix.py (several kill points, slow; quick profiles in `make reliability`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import typing

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import only_run_dir, read_summary, run_subprocess
from torch_cookbook import recipes
from torch_cookbook.cli import has_predict, main
from torch_cookbook.data import fashion_mnist
from torch_cookbook.engine.checkpoint import Checkpointer, load_checkpoint
from torch_cookbook.engine.loop import apply_update, autocast, backward_step, grad_scaler
from torch_cookbook.errors import ConfigError, DataError, NonFiniteError

SMOKE_BN = ["run", "batchnorm", "--profile", "smoke", "--threads", "2"]


def test_ctrl_c_saves_and_resume_matches_uninterrupted(tmp_path, smoke_runs):
    """A real SIGINT (what Ctrl-C sends) in the middle of a variant: the run saves, says how to resume, exits 130;
    the resumed run ends with the uninterrupted run's metrics."""
    expected = read_summary(smoke_runs("batchnorm")[0])["metrics"]
    interrupted = run_subprocess(*SMOKE_BN, "--runs-root", tmp_path, env={"COOKBOOK_INTERRUPT_AT_CALL": "15"})
    assert interrupted.returncode == 130, interrupted.stderr[-2000:]
    run_dir = only_run_dir(tmp_path, "batchnorm")
    assert f"resume with: cookbook run --resume {run_dir}" in interrupted.stderr
    assert "Traceback" not in interrupted.stderr
    assert list(run_dir.glob("variants/*/checkpoints/last.pt"))
    assert not (run_dir / "summary.json").exists()
    assert main(["run", "--resume", str(run_dir), "--threads", "2"]) == 0  # in-process: only the signal needs one
    assert read_summary(run_dir)["metrics"] == expected


def test_kill_during_checkpoint_write_resumes(tmp_path, smoke_runs):
    """SIGKILL after the temp file is written but before the rename: last.pt is the previous one."""
    expected = read_summary(smoke_runs("batchnorm")[0])["metrics"]
    crashed = run_subprocess(*SMOKE_BN, "--runs-root", tmp_path, "--checkpoint_every", "4",
                             env={"COOKBOOK_CRASH_IN_SAVE": "9"})
    assert crashed.returncode == -9
    run_dir = only_run_dir(tmp_path, "batchnorm")
    assert list(run_dir.glob("variants/*/checkpoints/.last.pt.tmp-*")), "the crash should leave a temp file"
    assert main(["run", "--resume", str(run_dir), "--threads", "2"]) == 0  # in-process: only the kill needs one
    assert read_summary(run_dir)["metrics"] == expected
    assert not list(run_dir.glob("variants/*/checkpoints/.last.pt.tmp-*"))


# ---- numerical faults: non-finite gradients and fp16 overflow --------------------------------------
class InfGradient(torch.autograd.Function):
    """Identity in the forward pass, inf in the backward: a finite loss whose gradients are not finite."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


CPU = torch.device("cpu")


def tiny_training(tmp_path, amp: str = "off", clip_norm: float = 0.0):
    """A small classifier, its optimizer, scaler and a Checkpointer saving every step, as a recipe wires them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = grad_scaler(CPU, amp)
    ckpt = Checkpointer(tmp_path, "test", "hash", every=1, model=model, optimizer=optimizer, scaler=scaler)
    assert ckpt.restore() == 0
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))

    def step(done: int, fault=None) -> bool:
        """One training step; `fault` transforms the loss before backward. Returns whether it updated."""
        with autocast(CPU, amp):
            loss = nn.functional.cross_entropy(model(x), y)
        if fault is not None:
            loss = fault(loss)
        stepped = backward_step(loss, optimizer, scaler, clip_norm=clip_norm)
        ckpt.after_step(done + 1, loss)
        return stepped

    return model, scaler, step


def params_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("clip_norm", [0.0, 1.0])
def test_nonfinite_gradient_stops_with_step_and_keeps_last_good(tmp_path, clip_norm):
    model, _, step = tiny_training(tmp_path, clip_norm=clip_norm)
    for done in range(3):
        assert step(done)
    good = (tmp_path / "last.pt").read_bytes()
    before = params_of(model)
    with pytest.raises(NonFiniteError, match=r"gradient norm became (inf|nan) at step 4 with a finite loss"):
        step(3, fault=InfGradient.apply)
    assert (tmp_path / "last.pt").read_bytes() == good  # the last good checkpoint is kept
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3
    for p, q in zip(model.parameters(), before):  # stopped before the update: the parameters are unharmed
        assert torch.equal(p, q)


def test_nonfinite_loss_is_left_to_the_loss_guard(tmp_path):
    """backward_step does not raise on a NaN loss (recipes that study divergence record it); after_step does."""
    _, _, step = tiny_training(tmp_path)
    assert step(0)
    with pytest.raises(NonFiniteError, match="loss became nan at step 2"):
        step(1, fault=lambda loss: loss * float("nan"))
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1


def test_nonfinite_gradient_stops_a_recipe_run(tmp_path, cli, monkeypatch):
    """Through the CLI on a real recipe: exit 1, one line naming the step, last.pt from before, no summary.
    (batchnorm records divergence as a result, so this uses a recipe for which it is an error.)"""
    from torch_cookbook.engine import trainer

    calls = 0

    def faulty_update(loss, *args, **kwargs):
        nonlocal calls
        calls += 1
        return apply_update(InfGradient.apply(loss) if calls == 5 else loss, *args, **kwargs)

    monkeypatch.setattr(trainer, "apply_update", faulty_update)
    code, _, err = cli("run", "autoencoder", "--profile", "smoke", "--threads", "2", "--runs-root", tmp_path,
                       "--checkpoint_every", "2")
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "gradient norm became" in err and "at step 5 with a finite loss" in err
    run_dir = only_run_dir(tmp_path, "autoencoder")
    assert not (run_dir / "summary.json").exists()
    (last_path,) = run_dir.glob("variants/*/checkpoints/last.pt")
    last = load_checkpoint(last_path)
    assert last["step"] == 4
    assert all(torch.isfinite(t).all() for t in last["state"]["model"].values())
    torch.set_num_threads(2)


def test_fp16_overflow_is_skipped_logged_and_not_fatal(tmp_path, capsys):
    """A step whose fp16 gradients overflow (loss ×1e6 under a 2^16 loss scale exceeds fp16's 65504) is
    skipped by the GradScaler, which halves the scale; the skip is printed; the NaN guard does not fire."""
    model, scaler, step = tiny_training(tmp_path, amp="fp16")
    assert scaler.is_enabled()
    for done in range(3):
        assert step(done)
    capsys.readouterr()
    scale, before = scaler.get_scale(), params_of(model)
    assert not step(3, fault=lambda loss: loss * 1e6)  # a finite loss whose scaled gradients overflow
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)  # skipped: no update
    assert scaler.get_scale() == scale / 2
    err = capsys.readouterr().err
    assert "fp16: gradients overflowed at step 4: update skipped, loss scale lowered to 32768" in err
    for done in range(4, 6):  # training goes on and updates again at the lower scale
        before = params_of(model)
        assert step(done)
        assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 6
    assert capsys.readouterr().err == ""


@pytest.fixture
def fmnist_copy(tmp_path, monkeypatch):
    source = fashion_mnist.find_source_dir()
    if source is None:
        pytest.skip("Fashion-MNIST is not installed")
    folder = tmp_path / "fmnist"
    shutil.copytree(source, folder)
    monkeypatch.setenv("COOKBOOK_FASHION_MNIST", str(folder))
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path / "cache"))
    return folder


def test_truncated_dataset_file_is_detected(fmnist_copy):
    path = fmnist_copy / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="unreadable or truncated.*apt-get install dataset-fashion-mnist"):
        fashion_mnist.load()


def test_altered_dataset_file_fails_its_checksum(fmnist_copy):
    import gzip

    path = fmnist_copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one label changed: same size, valid gzip
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="fails its checksum"):
        fashion_mnist.load()


def test_corrupt_cache_is_rebuilt_not_used(fmnist_copy, tmp_path, monkeypatch):
    first = fashion_mnist.load()
    cache = tmp_path / "cache" / "fashion_mnist.pt"
    assert cache.exists()
    cache.write_bytes(cache.read_bytes()[:1000])  # truncated cache
    shutil.rmtree(fmnist_copy)  # and no source: nothing valid left
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-such-dir")
    with pytest.raises(DataError, match="not found"):
        fashion_mnist.load()
    assert not cache.exists()  # the damaged cache was removed, never used
    assert first.train_images.shape == (60000, 28, 28)


# ---- fuzzing configs and CLI strings ------------------------------------------------------------
NAMES = recipes.names()
junk = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                 st.text(max_size=20), st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(
                     st.text(max_size=5), st.integers(), max_size=2))


def _field_names(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _field_names(hints[f.name], prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), data=st.data())
def test_fuzzed_config_values_are_valid_or_one_line_errors(name, data):
    recipe = recipes.get(name)
    fields = _field_names(recipe.Config)
    key = data.draw(st.one_of(st.sampled_from(fields), st.text(min_size=1, max_size=12)))
    value = data.draw(junk)
    try:
        cfg = recipe.config(data.draw(st.sampled_from(["smoke", "quick", "full"])), {key: value})
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert dataclasses.is_dataclass(cfg)


flag_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(NAMES), data=st.data())
def test_fuzzed_cli_strings_exit_0_or_one_line_2(name, data, capsys, tmp_path_factory):
    fields = _field_names(recipes.get(name).Config)
    flag = data.draw(st.one_of(st.sampled_from(fields), flag_text))
    values = data.draw(st.lists(flag_text, max_size=2))
    root = tmp_path_factory.mktemp("fuzz")
    code = main(["run", name, "--print-config", "--runs-root", str(root), f"--{flag}", *values])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not any(root.iterdir())  # --print-config and errors write nothing


@pytest.mark.parametrize("content", [b"", b"\x00\xff" * 50, b"[1, 2]", b'{"lr": "fast"}', b'{"nosuch": 1}',
                                     b'{"seed": -1}', b"{" * 10000])
def test_malformed_config_files_are_one_line_errors(tmp_path, cli, content):
    path = tmp_path / "cfg.json"
    path.write_bytes(content)
    code, _, err = cli("run", "batchnorm", "--config", path, "--runs-root", tmp_path / "runs")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("damage", ["missing", "not json", "wrong shape", "bad value"])
def test_damaged_run_directory_config_is_refused(smoke_runs, tmp_path, cli, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_runs("batchnorm")[0], run_dir)
    (run_dir / "summary.json").unlink()
    config = run_dir / "config.json"
    if damage == "missing":
        config.unlink()
    elif damage == "not json":
        config.write_text("{oops")
    elif damage == "wrong shape":
        config.write_text(json.dumps([1, 2, 3]))
    else:
        data = json.loads(config.read_text())
        data["config"]["lr"] = -5
        config.write_text(json.dumps(data))
    before = sorted(p.name for p in run_dir.rglob("*"))
    for command in (["run", "--resume", run_dir], ["eval", run_dir]):
        code, _, err = cli(*command)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing written or removed


def test_predict_fuzz_never_tracebacks(smoke_runs, tmp_path, cli):
    """Every recipe with `predict` gets empty, huge, binary and malformed-image inputs. In-process (40 predicts
    as subprocesses took two minutes): an exception that escaped `main` would fail the test as a traceback would."""
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    inputs = ["", "x" * 100_000, "\x01\x02\x7f", str(bad_png), str(tmp_path / "missing.png")]
    for recipe in recipes.all_recipes():
        if not has_predict(recipe) or getattr(recipe.module, "SKIP_REASON", None):
            continue
        run_dir = smoke_runs(recipe.name)[0]
        for text in inputs:
            code, _, err = cli("predict", recipe.name, run_dir, text)
            assert code in (0, 2), (recipe.name, text[:20], err[-1500:])
            assert "Traceback" not in err, (recipe.name, text[:20], err[-1500:])
    torch.set_num_threads(2)  # predict sets the run's thread count in this process; later tests assume 2


def test_huge_batch_is_a_config_error(cli, tmp_path):
    code, _, err = cli(*SMOKE_BN, "--batch_size", "100000", "--runs-root", tmp_path)
    assert code == 2 and "--batch_size 100000: larger than the 2048 training examples" in err
    torch.set_num_threads(2)

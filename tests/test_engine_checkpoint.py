"""Checkpoints: round trip, exact resume, and refusal of corrupt, foreign and malicious files."""

from __future__ import annotations

import errno
import os
import pickle
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from torch_cookbook.engine.checkpoint import Checkpointer, load_checkpoint, save_atomic
from torch_cookbook.engine.loop import backward_step, minibatches
from torch_cookbook.engine.repro import seed_everything
from torch_cookbook.errors import CheckpointError, NonFiniteError


def make_model() -> nn.Module:
    # Dropout makes the result depend on the RNG state, so resume must restore it exactly.
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def train(directory: Path, total: int, stop_at: int | None = None, seed: int = 0) -> nn.Module:
    """Train a tiny model for `total` steps, stopping (as if killed) after `stop_at` steps."""
    seed_everything(seed)
    x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=300, gamma=0.5)
    ckpt = Checkpointer(directory, "test", "hash", every=0, model=model, optimizer=optimizer, scheduler=scheduler)
    start = ckpt.restore()
    for step, _epoch, idx in minibatches(len(x), 32, seed, start_step=start):
        if step >= total:
            break
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        backward_step(loss, optimizer)
        scheduler.step()
        ckpt.after_step(step + 1, loss)
        if stop_at is not None and step + 1 == stop_at:
            ckpt.save(step + 1)
            return model
    ckpt.save(total)
    return model


def test_round_trip_restores_every_object(tmp_path):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 8)).sum().backward()
    opt.step()
    ckpt = Checkpointer(tmp_path, "test", "hash", every=0, model=model, optimizer=opt)
    ckpt.extra["note"] = "kept"
    ckpt.save(7)

    model2 = make_model()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.5, momentum=0.0)
    ckpt2 = Checkpointer(tmp_path, "test", "hash", every=0, model=model2, optimizer=opt2)
    assert ckpt2.restore() == 7
    assert ckpt2.extra == {"note": "kept"}
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["lr"] == 0.1
    momentum = [o.state_dict()["state"][0]["momentum_buffer"] for o in (opt, opt2)]
    assert torch.equal(*momentum)


def test_resume_gives_identical_parameters(tmp_path):
    """2,000 steps straight vs 1,000 steps, stop, new objects, resume for 1,000 more: bit-identical."""
    straight = train(tmp_path / "straight", 2000)
    train(tmp_path / "resumed", 2000, stop_at=1000)
    torch.manual_seed(12345)  # the resumed process starts from a different RNG state
    resumed = train(tmp_path / "resumed", 2000)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_resume_differs_without_rng_restore(tmp_path, monkeypatch):
    """The equality above is not vacuous: skipping the RNG restore changes the result."""
    straight = train(tmp_path / "straight", 400)
    train(tmp_path / "resumed", 400, stop_at=200)
    monkeypatch.setattr("torch_cookbook.engine.checkpoint.set_rng_state", lambda state: None)
    torch.manual_seed(12345)
    resumed = train(tmp_path / "resumed", 400)
    assert any(not torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters()))


class Payload:
    """A pickle that would create a marker file when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "last.pt"
    torch.save({"format_version": 1, "evil": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()
    # and the same payload does run under plain pickle: the test would catch a regression
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


# Random bytes once made the unpickler raise IndexError, which escaped as a traceback; 20 fixed draws each.
@pytest.mark.parametrize("damage", ["truncated", "empty", "missing"] + [f"random{i}" for i in range(20)])
def test_damaged_checkpoints_give_one_line_errors(tmp_path, damage):
    path = tmp_path / "last.pt"
    Checkpointer(tmp_path, "test", "hash", every=0, model=make_model()).save(1)
    blob = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage.startswith("random"):
        path.write_bytes(random.Random(int(damage[6:])).randbytes(4096))
    else:
        path.unlink()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
    assert str(path) in str(err.value)


def test_foreign_recipe_and_config_are_refused(tmp_path):
    Checkpointer(tmp_path, "gan", "abc", every=0, model=make_model()).save(1)
    with pytest.raises(CheckpointError, match="belongs to recipe 'gan'"):
        load_checkpoint(tmp_path / "last.pt", recipe="batchnorm")
    with pytest.raises(CheckpointError, match="different config"):
        load_checkpoint(tmp_path / "last.pt", recipe="gan", config_hash="xyz")


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = make_model()
    ckpt = Checkpointer(tmp_path, "test", "hash", every=0, model=model)
    ckpt.save(1)
    good = (tmp_path / "last.pt").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="disk full.*previous last.pt is kept"):
        ckpt.save(2)
    assert (tmp_path / "last.pt").read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_save_atomic_never_leaves_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "x.pt"
    save_atomic({"a": torch.ones(3)}, target)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only")))
    with pytest.raises(CheckpointError, match="Read-only"):
        save_atomic({"a": torch.zeros(3)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(3))


def test_nan_guard_stops_with_step_and_keeps_last_good(tmp_path):
    model = make_model()
    ckpt = Checkpointer(tmp_path, "test", "hash", every=1, model=model)
    ckpt.after_step(1, torch.tensor(0.5))
    good = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(NonFiniteError, match="at step 2"):
        ckpt.after_step(2, torch.tensor(float("nan")))
    assert (tmp_path / "last.pt").read_bytes() == good


def test_a_step_is_saved_only_when_first_reported(tmp_path):
    """A mid-step call (same step again, after the next forward pass) must not overwrite last.pt."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    ckpt = Checkpointer(tmp_path, "test", "hash", every=2, model=model)
    assert ckpt.restore() == 0
    ckpt.after_step(0, torch.tensor(1.0))  # before the first update: nothing to save
    assert not (tmp_path / "last.pt").exists()
    ckpt.after_step(2)  # step 2 finished: saved
    saved = (tmp_path / "last.pt").read_bytes()
    model.train()(torch.randn(8, 4))  # the next step's forward pass moves the BN statistics
    ckpt.after_step(2, torch.tensor(1.0))  # NaN check of that forward pass: no save
    assert (tmp_path / "last.pt").read_bytes() == saved

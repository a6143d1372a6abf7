"""engine.trainer.Trainer: the loop scaffold resumes exactly, guards against NaN without a device read per
step, never saves after a non-finite step, stops early, keeps the best and reloads it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_cookbook.engine.checkpoint import STOP, load_checkpoint
from torch_cookbook.engine.config import BaseConfig
from torch_cookbook.engine.loop import batches, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import Interrupted, NonFiniteError

CPU = torch.device("cpu")
X, Y = torch.randn(64, 8, generator=torch.Generator().manual_seed(1)), torch.arange(64) % 3


class InfGradient(torch.autograd.Function):
    """Identity forward, inf gradient backward: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def make_run(tmp_path, every: int = 0) -> Run:
    return Run.create("test", BaseConfig(checkpoint_every=every), "smoke", CPU, root=tmp_path)


def train(run: Run, steps: int, every: int = 5, log_every: int = 0, fault_at: int = 0, fault=None,
          stop_when=None) -> tuple[nn.Module, Trainer]:
    """A small classifier trained the way a recipe writes it; `fault` transforms the loss at step `fault_at`."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(run, steps, every=every, log_every=log_every, model=model, optimizer=optimizer)
    for step, idx in trainer.steps(batches(len(X), 16, 0, trainer.start)):
        x, y = take(idx, X, Y, device=CPU)
        loss = nn.functional.cross_entropy(model(x), y)
        if step + 1 == fault_at:
            loss = fault(loss)
        trainer.backward(loss)
        if stop_when is not None and stop_when(step + 1):
            trainer.stop()
    return model, trainer


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_matches_a_hand_written_loop(tmp_path):
    """The scaffold adds no arithmetic: the same weights as the plain zero_grad/backward/step loop."""
    model, trainer = train(make_run(tmp_path), 12)
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for _, idx in zip(range(12), batches(len(X), 16, 0)):
        opt.zero_grad()
        nn.functional.cross_entropy(ref(X[idx]), Y[idx]).backward()
        opt.step()
    assert same_weights(model, ref)
    assert trainer.step == 12
    assert load_checkpoint(trainer.ckpt.last_path)["step"] == 12


def test_resume_from_a_periodic_checkpoint_is_exact(tmp_path):
    """Stopped after step 10 (saved at 10), a new Trainer on the same run continues to the same weights."""
    full, _ = train(make_run(tmp_path / "a"), 17)
    run = make_run(tmp_path / "b")
    train(run, 17, stop_when=lambda done: done == 10)
    assert load_checkpoint(run.checkpoint_path())["step"] == 10
    resumed, trainer = train(run, 17)
    assert trainer.start == 10
    assert same_weights(resumed, full)


def test_losses_are_read_at_log_intervals_not_every_step(tmp_path, monkeypatch):
    reads = []
    real = Trainer.check_finite

    def counting(self):
        if self._pending:
            reads.append((self.step, len(self._pending)))
        real(self)

    monkeypatch.setattr(Trainer, "check_finite", counting)
    train(make_run(tmp_path), 30, every=0, log_every=10)
    assert [n for _, n in reads] == [10, 10, 10]  # one read per 10 steps, each covering 10 losses


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(NonFiniteError, match="loss became nan at step 8; stopped, the last good checkpoint is kept"):
        train(run, 20, every=5, log_every=10, fault_at=8, fault=lambda loss: loss * float("nan"))
    last = load_checkpoint(run.checkpoint_path())
    assert last["step"] == 5  # the save due at step 10 was not written
    assert all(torch.isfinite(t).all() for t in last["state"]["model"].values())


def test_nonfinite_gradient_with_finite_loss_is_caught_before_any_save(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(NonFiniteError, match=r"gradient norm became (inf|nan) at step 7 with a finite loss"):
        train(run, 20, every=5, log_every=10, fault_at=7, fault=InfGradient.apply)
    last = load_checkpoint(run.checkpoint_path())
    assert last["step"] == 5
    assert all(torch.isfinite(t).all() for t in last["state"]["model"].values())


def test_save_best_checks_first(tmp_path):
    """A best.pt is never written from a step whose loss was not finite, even between log intervals."""
    run = make_run(tmp_path)
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    trainer = Trainer(run, 10, log_every=100, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(NonFiniteError, match="at step 2"):
        for step in trainer.steps():
            loss = model(X).sum() * (float("nan") if step == 1 else 1.0)
            trainer.backward(loss)
            trainer.save_best(-float(step))
    assert load_checkpoint(run.checkpoint_path("best"))["step"] == 1


def test_keep_best_and_reload(tmp_path):
    run = make_run(tmp_path)
    model = nn.Linear(8, 3)
    trainer = Trainer(run, 6, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    scores = [0.2, 0.5, 0.9, 0.4, 0.3, 0.1]
    snapshots = {}
    for step in trainer.steps():
        trainer.backward(nn.functional.cross_entropy(model(X), Y))
        snapshots[step + 1] = {k: v.clone() for k, v in model.state_dict().items()}
        trainer.save_best(scores[step])
    assert trainer.best_value == 0.9
    best = trainer.load_best(model)
    assert best["step"] == 3
    assert all(torch.equal(model.state_dict()[k], v) for k, v in snapshots[3].items())


def test_stop_before_the_loop_runs_no_step_and_saves(tmp_path):
    run = make_run(tmp_path)
    model = nn.Linear(8, 3)
    trainer = Trainer(run, 6, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.stop()
    assert list(trainer.steps()) == []
    assert load_checkpoint(run.checkpoint_path())["step"] == 0


def test_accepted_divergence_ends_the_loop_without_an_error(tmp_path):
    """A study of divergence records it: diverged() reads it now, stop(accept_nonfinite=True) ends quietly."""
    run = make_run(tmp_path)
    model = nn.Linear(8, 3)
    trainer = Trainer(run, 20, every=5, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    seen = []
    for step in trainer.steps():
        trainer.backward(model(X).sum() * (float("inf") if step == 6 else 1.0))
        if trainer.diverged():
            seen.append(step + 1)
            trainer.stop(accept_nonfinite=True)
    assert seen == [7]
    assert trainer.step == 7
    assert load_checkpoint(run.checkpoint_path())["step"] == 7


def test_ctrl_c_saves_at_the_step_boundary(tmp_path):
    run = make_run(tmp_path)
    model = nn.Linear(8, 3)
    trainer = Trainer(run, 20, every=0, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    try:
        with pytest.raises(Interrupted, match="checkpoint saved"):
            for step in trainer.steps():
                trainer.backward(model(X).sum())
                if step == 3:
                    STOP.requested = True
    finally:
        STOP.requested = False
    assert load_checkpoint(run.checkpoint_path())["step"] == 4


def test_record_guards_losses_without_backward(tmp_path):
    run = make_run(tmp_path)
    trainer = Trainer(run, 5, log_every=5)
    with pytest.raises(NonFiniteError, match="objective became inf at step 3"):
        for step in trainer.steps():
            trainer.record(torch.tensor(float("inf") if step == 2 else 1.0), name="objective")


def test_backward_without_an_optimizer_is_a_clear_error(tmp_path):
    trainer = Trainer(make_run(tmp_path), 1)
    with pytest.raises(TypeError, match="needs an optimizer"):
        trainer.backward(torch.ones((), requires_grad=True))

"""FGSM/PGD (torch_cookbook.nn.attacks) and the adversarial recipe's input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import only_run_dir, read_summary
from torch_cookbook.data import fashion_mnist
from torch_cookbook.nn.attacks import check_eps, fgsm, pgd_linf
from torch_cookbook.recipes import adversarial
from torch_cookbook.recipes.adversarial import Config, SmallCNN, load_data, training_loss


@pytest.fixture(scope="module")
def trained():
    """A small CNN trained for a few steps on 1,024 Fashion-MNIST images, and 256 test images in [0, 1]."""
    data = fashion_mnist.load()
    x = fashion_mnist.as_float(data.train_images[:1024], normalize=False)
    y = data.train_labels[:1024]
    torch.manual_seed(0)
    model = SmallCNN(width=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _epoch in range(3):
        for i in range(0, 1024, 64):
            loss = F.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    x_test = fashion_mnist.as_float(data.test_images[:256], normalize=False)
    return model.eval(), x_test, data.test_labels[:256]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("attack", ["fgsm", "fgsm_rs", "pgd"])
@pytest.mark.parametrize("eps", [0.03, 0.1, 0.5])
def test_attack_stays_in_the_eps_ball_and_pixel_range(trained, attack, eps):
    model, x, y = trained
    x = x[:64]
    if attack == "pgd":
        x_adv = pgd_linf(model, x, y[:64], eps, alpha=eps / 4, steps=5)
    else:
        x_adv = fgsm(model, x, y[:64], eps, random_start=attack == "fgsm_rs", alpha=1.25 * eps)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= eps + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert (x_adv != x).any()


def test_fgsm_is_the_signed_gradient_step():
    """Against a linear model the FGSM step is exactly eps * sign(w_wrong - w_true) per pixel (inside [0, 1])."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    x = torch.full((1, 1, 2, 2), 0.5)
    y = torch.tensor([0])
    w = model[1].weight.detach()
    grad_sign = torch.sign(w[1] - w[0]).view(1, 1, 2, 2)  # d CE / d x points along w_other - w_true
    assert torch.allclose(fgsm(model, x, y, 0.1), x + 0.1 * grad_sign)


def test_pgd_is_at_least_as_strong_as_fgsm(trained):
    model, x, y = trained
    clean = accuracy(model, x, y)
    after_fgsm = accuracy(model, fgsm(model, x, y, 0.1), y)
    after_pgd = accuracy(model, pgd_linf(model, x, y, 0.1, alpha=0.0125, steps=20,
                                         generator=torch.Generator().manual_seed(0)), y)
    assert clean > 0.6
    assert after_fgsm < clean
    assert after_pgd <= after_fgsm


def test_attacks_do_not_touch_parameter_gradients(trained):
    model, x, y = trained
    for p in model.parameters():
        p.grad = None
    fgsm(model, x[:16], y[:16], 0.1, random_start=True)
    pgd_linf(model, x[:16], y[:16], 0.1, alpha=0.02, steps=3)
    assert all(p.grad is None for p in model.parameters())
    # and gradients already accumulated by a training step are left exactly as they were
    F.cross_entropy(model(x[:16]), y[:16]).backward()
    before = [p.grad.clone() for p in model.parameters()]
    pgd_linf(model, x[:16], y[:16], 0.1, alpha=0.02, steps=3)
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before))
    for p in model.parameters():
        p.grad = None


def test_pgd_random_start_is_reproducible_with_a_generator(trained):
    model, x, y = trained
    a = pgd_linf(model, x[:8], y[:8], 0.1, alpha=0.02, steps=2, generator=torch.Generator().manual_seed(3))
    b = pgd_linf(model, x[:8], y[:8], 0.1, alpha=0.02, steps=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("eps", [0.0, -0.1, 1.5])
def test_eps_outside_0_1_is_refused(eps):
    with pytest.raises(ValueError, match="out of range"):
        check_eps(eps)


@pytest.mark.parametrize("args, fragment", [
    (["--eps", "0"], "--eps 0.0: out of range, allowed (0, 1]"),
    (["--eps", "1.5"], "--eps 1.5: out of range"),
    (["--attack", "cw"], "--attack cw: not one of the allowed values (fgsm, pgd)"),
    (["--curve_eps", "0.1", "2"], "--curve_eps 2.0: out of range"),
])
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, args, fragment):
    code, out, err = cli("run", "adversarial", "--profile", "smoke", "--runs-root", tmp_path, *args)
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


# ---- the recipe's training loss, training ε and validation split ---------------------------------------
@pytest.mark.parametrize("variant", ["fgsm_rs", "pgd"])
def test_adv_weight_zero_is_standard_training_and_one_is_attacked_only(trained, variant):
    model, x, y = trained
    x, y = x[:32], y[:32]
    standard = training_loss("standard", model, x, y, Config())
    assert torch.equal(training_loss(variant, model, x, y, Config(adv_weight=0.0)), standard)
    torch.manual_seed(5)
    x_adv = adversarial.adversarial_batch(variant, model.eval(), x, y, Config())
    attacked = F.cross_entropy(model(x_adv), y)
    torch.manual_seed(5)
    assert torch.allclose(training_loss(variant, model, x, y, Config(adv_weight=1.0)), attacked)
    torch.manual_seed(5)  # the same random start: the mix is exactly (1 - w) clean + w attacked
    mixed = training_loss(variant, model, x, y, Config(adv_weight=0.25))
    assert torch.allclose(mixed, 0.75 * standard + 0.25 * attacked, atol=1e-6)
    model.eval()


def test_standard_variant_ignores_adv_weight(trained):
    model, x, y = trained
    a = training_loss("standard", model, x[:32], y[:32], Config(adv_weight=1.0))
    b = training_loss("standard", model, x[:32], y[:32], Config(adv_weight=0.3))
    assert torch.equal(a, b)
    model.eval()


def test_train_eps_is_used_in_training_and_eps_in_evaluation(trained, monkeypatch):
    model, x, y = trained
    seen = []
    real_pgd, real_fgsm = adversarial.pgd_linf, adversarial.fgsm
    monkeypatch.setattr(adversarial, "pgd_linf", lambda m, x, y, eps, **kw: seen.append(eps) or real_pgd(m, x, y,
                                                                                                       eps, **kw))
    monkeypatch.setattr(adversarial, "fgsm", lambda m, x, y, eps, **kw: seen.append(eps) or real_fgsm(m, x, y,
                                                                                                    eps, **kw))
    cfg = Config(eps=0.1, train_eps=0.05, eval_subset=16, eval_attack_steps=2, adv_weight=0.5)
    training_loss("pgd", model, x[:16], y[:16], cfg)
    training_loss("fgsm_rs", model, x[:16], y[:16], cfg)
    assert seen == [0.05, 0.05]
    seen.clear()
    adversarial.measure(cfg, model.eval(), x[:16], y[:16], torch.device("cpu"))
    assert seen == [0.1]
    seen.clear()
    training_loss("pgd", model, x[:16], y[:16], Config(eps=0.1, train_eps=0.0))  # 0 = same as --eps
    assert seen == [0.1]
    model.eval()


def test_val_size_holds_out_the_last_training_images():
    x_tr, y_tr, x_val, y_val = load_data(Config(train_subset=1000, val_size=200, eval_subset=100))
    data = fashion_mnist.load()
    assert len(x_tr) == 800 and len(x_val) == 200
    assert torch.equal(y_val, data.train_labels[800:1000]) and torch.equal(y_tr, data.train_labels[:800])
    assert torch.equal(x_val, fashion_mnist.as_float(data.train_images[800:1000], normalize=False))


def test_a_validation_run_reports_val_metrics_and_no_test_metrics(cli, tmp_path):
    code, _, _ = cli("run", "adversarial", "--profile", "smoke", "--runs-root", tmp_path, "--val_size", "128",
                     "--threads", "2")
    assert code == 0
    summary = read_summary(only_run_dir(tmp_path, "adversarial"))
    assert summary["metrics"] and all(k.startswith("val_") for k in summary["metrics"])
    assert "val_pgd_robust_accuracy" in summary["metrics"]
    assert all(t["met"] is None for t in summary["targets"])  # validation numbers are never checked as targets


@pytest.mark.parametrize("args, fragment", [
    (["--val_size", "1024"], "--val_size 1024: leaves no training images"),
    (["--val_size", "32"], "--eval_subset 64: larger than --val_size 32"),
    (["--adv_weight", "1.5"], "--adv_weight 1.5: out of range"),
])
def test_bad_validation_and_mix_settings_are_refused(cli, tmp_path, args, fragment):
    code, _, err = cli("run", "adversarial", "--profile", "smoke", "--runs-root", tmp_path, *args)
    assert code == 2 and fragment in err
    assert not any(tmp_path.iterdir())

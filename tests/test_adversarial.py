"""FGSM/PGD (torch_cookbook.nn.attacks) and the adversarial recipe's input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from torch_cookbook.data import fashion_mnist
from torch_cookbook.nn.attacks import check_eps, fgsm, pgd_linf
from torch_cookbook.recipes.adversarial import SmallCNN


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

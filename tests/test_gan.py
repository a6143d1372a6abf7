"""The gan recipe: DCGAN shapes, the D and G steps, FID against a reference formula, the smoke run, predict and its
bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scipy import linalg

from conftest import only_run_dir, read_summary
from torch_cookbook.nn.fmnist_features import FashionClassifier, FeatureExtractor
from torch_cookbook.nn.gan import Discriminator, Generator, dcgan_init
from torch_cookbook.recipes import gan
from torch_cookbook.recipes.gan import fids


@pytest.fixture(scope="module")
def smoke_run(smoke_runs):
    return smoke_runs("gan")[0]  # the session's smoke run, shared with the contract tests (these only read it)


def test_generator_and_discriminator_shapes():
    torch.manual_seed(0)
    g, d = Generator(latent_dim=10, width=4), Discriminator(width=4)
    g.apply(dcgan_init)
    images = g(torch.randn(5, 10))
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1  # tanh output, like the data scaled to [-1, 1]
    assert d(images).shape == (5,)  # one logit per image


def test_non_saturating_loss_has_the_larger_gradient_where_g_is_bad():
    """Where D confidently rejects a fake (D(G(z)) ≈ 0), -log D still pushes G; log(1 - D) barely does."""
    logit = torch.tensor([-6.0], requires_grad=True)
    non_saturating = torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.ones(1))
    (grad_ns,) = torch.autograd.grad(non_saturating, logit)
    minimax = torch.log1p(-torch.sigmoid(logit)).sum()  # G minimises log(1 - D(G(z)))
    (grad_mm,) = torch.autograd.grad(minimax, logit)
    assert grad_ns.abs().item() > 100 * grad_mm.abs().item()


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_d_step_moves_only_d_and_g_step_moves_only_g(tmp_path):
    from torch_cookbook.engine.runs import Run
    from torch_cookbook.engine.trainer import Trainer

    cfg = gan.Config(**gan.profiles["smoke"])
    g, d = gan.build_models(cfg, torch.device("cpu"))
    opt_g, opt_d = torch.optim.Adam(g.parameters(), lr=1e-2), torch.optim.Adam(d.parameters(), lr=1e-2)
    trainer = Trainer(Run(tmp_path, "gan", cfg, "smoke", torch.device("cpu")), 1, g=g, d=d, opt_g=opt_g, opt_d=opt_d)
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    fake = g(torch.randn(8, cfg.latent_dim))
    g0, d0 = params(g), params(d)

    d_loss, d_real, d_fake = gan.d_step(trainer, d, opt_d, None, real, fake, "off")
    assert same(params(g), g0) and all(p.grad is None for p in g.parameters())  # the fakes were detached
    assert not same(params(d), d0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits
    assert d_loss.item() == pytest.approx((expected(d_real, torch.ones(8)) + expected(d_fake, torch.zeros(8))).item())

    d1 = params(d)
    gan.g_step(trainer, d, opt_g, None, fake, "off")
    assert same(params(d), d1)  # G's loss reaches D's gradients, but only G's optimizer steps
    assert not same(params(g), g0)


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance with scipy's matrix square root: ||mu_a - mu_b||² + Tr(Sa + Sb - 2 (Sa Sb)^½)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(sa @ sb).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa + sb - 2 * covmean))


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # random features: near-singular covariances
def test_fid_with_the_classifier_features_matches_the_reference_formula():
    torch.manual_seed(0)
    classifier = FashionClassifier(width=4, features=16).eval()
    extractor = FeatureExtractor(classifier)
    real = torch.rand(300, 1, 28, 28)
    other = (torch.rand(300, 1, 28, 28) * 0.6).clamp(0, 1)
    got, itself = fids(extractor, real, other, real, batch=128)
    with torch.no_grad():
        expected = _reference_fid(extractor(real).double().numpy(), extractor(other).double().numpy())
    assert got == pytest.approx(expected, rel=1e-3)
    assert itself == pytest.approx(0.0, abs=1e-3)  # a set is at distance 0 from itself


def test_smoke_run_saves_grids_losses_histogram_and_both_networks(smoke_run):
    plots = {p.name for p in (smoke_run / "plots").glob("*.png")}
    assert {"samples.png", "losses.png", "class_histogram.png", "samples_epoch01.png"} <= plots
    ckpt = torch.load(smoke_run / "checkpoints" / "last.pt", weights_only=True)
    assert {"g", "d", "opt_g", "opt_d"} <= set(ckpt["state"])
    m = read_summary(smoke_run)["metrics"]
    assert sum(m[f"class_fraction_{i}"] for i in range(10)) == pytest.approx(1.0)
    assert m["fid_ratio"] == pytest.approx(m["fid"] / m["fid_floor"])
    assert m["fid"] > m["fid_floor"] > 0  # 24 smoke steps do not reach real data


def test_dev_fid_is_logged_and_changes_nothing_else(smoke_run, tmp_path):
    import json

    from torch_cookbook.cli import main

    assert main(["run", "gan", "--profile", "smoke", "--dev_fid_every", "8", "--dev_fid_samples", "300",
                 "--runs-root", str(tmp_path), "--threads", "2"]) == 0
    run = only_run_dir(tmp_path, "gan")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    dev = [(r["step"], r["eval/dev_fid"]) for r in rows if "eval/dev_fid" in r]
    assert [s for s, _ in dev] == [8, 16, 24] and all(v > 0 for _, v in dev)
    # Its samples come from their own noise stream with G in eval mode: the training run is the same run.
    assert read_summary(run)["metrics"] == read_summary(smoke_run)["metrics"]
    a = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state"]["g"]
    b = torch.load(smoke_run / "checkpoints" / "last.pt", weights_only=True)["state"]["g"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_predict_writes_a_grid_of_new_samples(smoke_run, cli, tmp_path):
    out = tmp_path / "grid.png"
    code, stdout, err = cli("predict", "gan", smoke_run, "--n", "9", "--out", out)
    assert code == 0, err
    image = __import__("matplotlib.pyplot").pyplot.imread(out)
    assert image.shape[:2] == (3 * 30 + 2, 3 * 30 + 2)  # 3×3 grid of 28-pixel images, 2-pixel padding


@pytest.mark.parametrize("args, expected", [
    (["--n", "0"], "--n 0: out of range, allowed [1, 1024]"),
    (["--n", "5000"], "--n 5000: out of range"),
    (["--out", "/nonexistent/folder/grid.png"], "folder /nonexistent/folder does not exist"),
    (["--out", "grid.jpg"], "give a path ending in .png"),
])
def test_predict_bad_input_is_one_line_exit_2(smoke_run, cli, args, expected):
    code, _, err = cli("predict", "gan", smoke_run, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err


def test_predict_without_a_checkpoint_is_one_line_exit_2(smoke_run, cli, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(smoke_run, broken)
    (broken / "checkpoints" / "last.pt").unlink()
    code, _, err = cli("predict", "gan", broken, "--out", tmp_path / "x.png")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, expected", [
    (["--fid_real", "20000"], "--fid_real 20000: out of range"),
    (["--batch_size", "512", "--train_subset", "100"], "larger than --train_subset 100"),
    (["--latent_dim", "0"], "--latent_dim 0: out of range"),
])
def test_bad_config_is_one_line_exit_2(cli, tmp_path, args, expected):
    code, _, err = cli("run", "gan", "--profile", "smoke", "--runs-root", tmp_path, *args)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())

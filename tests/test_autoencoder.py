"""The autoencoder recipe: the seed's model exactly, the VAE's loss and closed-form KL, the smoke run."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from conftest import read_summary
from torch_cookbook.nn.autoencoder import VAE, ConvAutoEncoder, SeedAutoEncoder, kl_divergence
from torch_cookbook.recipes.autoencoder import vae_loss


@pytest.fixture(scope="module")
def smoke_run(smoke_runs):
    return smoke_runs("autoencoder")[0]  # the session's smoke run, shared with the contract tests (read only)


def test_seed_model_is_the_seeds_784_128_64_12_3_mlp():
    model = SeedAutoEncoder()
    enc = [(m.in_features, m.out_features) for m in model.encoder if isinstance(m, nn.Linear)]
    dec = [(m.in_features, m.out_features) for m in model.decoder if isinstance(m, nn.Linear)]
    assert enc == [(784, 128), (128, 64), (64, 12), (12, 3)]
    assert dec == [(3, 12), (12, 64), (64, 128), (128, 784)]
    assert not isinstance(model.encoder[-1], nn.ReLU)  # the code is linear
    assert isinstance(model.decoder[-1], nn.Sigmoid)
    out = model(torch.rand(4, 784))
    assert out.shape == (4, 784) and out.min() >= 0 and out.max() <= 1


def test_conv_models_keep_the_image_shape():
    x = torch.rand(3, 1, 28, 28)
    ae, vae = ConvAutoEncoder(latent=7, width=4), VAE(latent=5, width=4)
    assert ae(x).shape == x.shape and ae.encode(x).shape == (3, 7)
    logits, mu, logvar = vae(x)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (3, 5)
    assert vae.sample(6).shape == (6, 1, 28, 28)


def test_vae_kl_term_equals_the_closed_form():
    torch.manual_seed(0)
    mu, logvar = torch.randn(8, 5), torch.randn(8, 5)
    expected = torch_kl(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl_divergence(mu, logvar), expected, atol=1e-5)
    # and a Monte Carlo estimate E_q[log q(z) - log p(z)] agrees with it
    q = Normal(mu[0], (0.5 * logvar[0]).exp())
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    assert mc.item() == pytest.approx(kl_divergence(mu[:1], logvar[:1]).item(), rel=0.02)
    assert kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0  # q = prior


def test_vae_loss_sums_over_pixels_and_averages_over_images():
    torch.manual_seed(0)
    x, logits = torch.rand(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    loss, recon, kl = vae_loss(logits, x, mu, logvar)
    per_image = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 4
    assert recon.item() == pytest.approx(per_image.item(), rel=1e-5)
    assert loss.item() == pytest.approx((recon + kl).item(), rel=1e-6)


def test_reparameterisation_lets_gradients_reach_mu_and_logvar():
    torch.manual_seed(0)
    vae = VAE(latent=4, width=4)
    x = torch.rand(2, 1, 28, 28)
    logits, mu, logvar = vae(x)
    loss, _, _ = vae_loss(logits, x, mu, logvar)
    loss.backward()
    grad = vae.to_stats.weight.grad  # the layer producing both mu (first half) and logvar (second half)
    assert grad[:4].abs().sum() > 0 and grad[4:].abs().sum() > 0


def test_smoke_run_trains_four_variants_and_saves_the_plots(smoke_run):
    for name in ("mlp", "conv", "denoising", "vae"):
        variant = smoke_run / "variants" / name
        assert (variant / "checkpoints" / "last.pt").exists()
        assert "test_mse" in json.loads((variant / "result.json").read_text())
    plots = {p.name for p in (smoke_run / "plots").glob("*.png")}
    assert {"reconstructions.png", "latent_space_3d.png", "vae_samples.png", "learning_curves.png"} <= plots
    m = read_summary(smoke_run)["metrics"]
    assert m["vae_samples_saved"] == 1.0
    assert m["mse_ratio_mlp_over_conv"] == pytest.approx(m["mlp_test_mse"] / m["conv_test_mse"])
    assert 0 <= m["mlp_knn_accuracy"] <= 1 and m["pca3_knn_accuracy"] > 0.3  # PCA-3 codes carry class information


@pytest.mark.parametrize("args, expected", [
    (["--noise_std", "0"], "--noise_std 0.0: out of range, allowed (0, 1]"),
    (["--batch_size", "512", "--train_subset", "100"], "larger than --train_subset 100"),
    (["--knn_k", "50", "--train_subset", "20", "--batch_size", "8"], "more neighbours than the 20 training images"),
    (["--vae_latent", "0"], "--vae_latent 0: out of range"),
])
def test_bad_config_is_one_line_exit_2(cli, tmp_path, args, expected):
    code, _, err = cli("run", "autoencoder", "--profile", "smoke", "--runs-root", tmp_path, *args)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())

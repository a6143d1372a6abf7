"""The autoencoder recipe: the seed's model exactly, the controls (MLP with a wider code, Kingma & Welling's MLP VAE),
the VAE's loss, closed-form KL and test negative ELBO, the smoke run; a folder of your own images (--data): run ->
eval -> predict, the networks at 32 and 64 pixels, grey or RGB, bad input refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from conftest import only_run_dir, read_summary
from torch_cookbook.nn.autoencoder import MLPVAE, VAE, ConvAutoEncoder, MLPAutoEncoder, SeedAutoEncoder, kl_divergence
from torch_cookbook.recipes.autoencoder import MODELS, negative_elbo, vae_loss


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


def linears(layers: nn.Sequential) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in layers if isinstance(m, nn.Linear)]


def test_controls_are_the_seeds_mlp_with_a_wider_code_and_kingma_wellings_784_400_20_vae():
    wide, vae = MLPAutoEncoder(latent=32), MLPVAE()
    assert linears(wide.encoder) == [(784, 128), (128, 64), (64, 32)]
    assert linears(wide.decoder) == [(32, 64), (64, 128), (128, 784)]
    assert linears(vae.encoder) == [(784, 400), (400, 40)]  # mu and logvar, 20 each
    assert linears(vae.decoder) == [(20, 400), (400, 784)]
    x = torch.rand(3, 1, 28, 28)
    assert wide.reconstruct(x).shape == x.shape and wide.encode(x).shape == (3, 32)
    logits, mu, logvar = vae(x)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (3, 20)
    assert vae.reconstruct(x).shape == x.shape and vae.sample(4).shape == (4, 1, 28, 28)


def test_negative_elbo_is_bce_summed_over_pixels_plus_kl_averaged_over_images():
    """The figure the target compares: one seeded z per image, the same number on every call (so eval repeats it)."""
    torch.manual_seed(0)
    vae, x = MLPVAE(latent=3, hidden=8), torch.rand(5, 1, 28, 28)
    eps = torch.randn(5, 3, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        mu, logvar = vae.posterior(x)
        logits = vae.decode(mu + (0.5 * logvar).exp() * eps)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        by_hand = (bce + kl_divergence(mu, logvar)).mean().item()
    assert negative_elbo(vae, x, torch.device("cpu"), seed=7) == pytest.approx(by_hand, rel=1e-6)
    assert negative_elbo(vae, x, torch.device("cpu"), seed=7) == negative_elbo(vae, x, torch.device("cpu"), seed=7)


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


def test_smoke_run_trains_every_variant_and_saves_the_plots(smoke_run):
    assert MODELS == ("mlp", "conv", "denoising", "vae", "mlp_wide", "conv3", "mlp_vae")
    for name in MODELS:
        variant = smoke_run / "variants" / name
        assert (variant / "checkpoints" / "last.pt").exists()
        assert "test_mse" in json.loads((variant / "result.json").read_text())
    plots = {p.name for p in (smoke_run / "plots").glob("*.png")}
    assert {"reconstructions.png", "latent_space_3d.png", "vae_samples.png", "mlp_vae_samples.png",
            "learning_curves.png"} <= plots
    m = read_summary(smoke_run)["metrics"]
    assert m["mse_ratio_mlp_over_conv"] == pytest.approx(m["mlp_test_mse"] / m["conv_test_mse"])
    assert m["mse_ratio_mlp_over_conv3"] == pytest.approx(m["mlp_test_mse"] / m["conv3_test_mse"])
    assert m["mse_ratio_mlp_wide_over_conv"] == pytest.approx(m["mlp_wide_test_mse"] / m["conv_test_mse"])
    assert m["nelbo_mlp_vae_minus_vae"] == pytest.approx(m["mlp_vae_test_nelbo"] - m["vae_test_nelbo"])
    # A Bernoulli cross-entropy is never below the grey levels' own entropy, and KL >= 0: the ELBO's floor.
    assert min(m["vae_test_nelbo"], m["mlp_vae_test_nelbo"]) > m["test_pixel_entropy"] > 0
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


# ---- your own images (--data DIR) ----------------------------------------------------------------------------
def write_images(folder, n=12, size=16):
    """n random size×size PNGs under `folder`, every third in a subfolder; grey and RGB mixed (so: 3 channels)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        where = folder / "more" if i % 3 == 0 else folder
        where.mkdir(parents=True, exist_ok=True)
        pixels = (rng.random((size, size) if i % 2 else (size, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(where / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("autoencoder_own")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COOKBOOK_CACHE", str(root / "cache"))
        data = write_images(root / "photos")
        assert main(["run", "autoencoder", "--profile", "smoke", "--batch_size", "4", "--threads", "2", "--data",
                     str(data), "--runs-root", str(root / "runs")]) == 0
    return only_run_dir(root / "runs", "autoencoder"), data, root / "cache"


@pytest.mark.parametrize("size, channels", [(32, 1), (32, 3), (64, 1), (64, 3)])
def test_models_take_32_or_64_pixels_grey_or_rgb(size, channels):
    x = torch.rand(2, channels, size, size)
    ae, vae = ConvAutoEncoder(7, 4, size, channels), VAE(5, 4, size, channels)
    assert ae(x).shape == x.shape and ae.encode(x).shape == (2, 7)
    assert vae(x)[0].shape == x.shape and vae.sample(3).shape == (3, channels, size, size)
    assert SeedAutoEncoder(channels * size * size)(x.flatten(1)).shape == (2, channels * size * size)
    assert MLPAutoEncoder(9, channels * size * size).reconstruct(x).shape == x.shape
    assert MLPVAE(5, 16, size, channels)(x)[0].shape == x.shape


def test_own_images_run_then_eval_then_predict(own_run, cli, monkeypatch, tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    run_dir, data, cache = own_run
    monkeypatch.setenv("COOKBOOK_CACHE", str(cache))
    summary = read_summary(run_dir)
    m = summary["metrics"]
    # No labels: no k-NN; the VAE's samples get a Lite0 FID beside its floor; all named user_*.
    assert all(k.startswith("user_") for k in m) and not any("knn" in k for k in m)
    expected = {"user_conv_test_mse", "user_pca3_test_mse", "user_vae_fid", "user_fid_floor", "user_vae_fid_ratio"}
    assert expected <= m.keys()
    assert m["user_fid_images"] == 2 and m["user_vae_test_nelbo"] > m["user_test_pixel_entropy"]
    assert all(t["met"] is None for t in summary["targets"])
    plots = {p.name for p in (run_dir / "plots").glob("*.png")}
    assert {"reconstructions.png", "latent_space_3d.png", "vae_samples.png", "mlp_vae_samples.png",
            "learning_curves.png"} <= plots
    conv = torch.load(run_dir / "variants" / "conv" / "checkpoints" / "last.pt", weights_only=True)["state"]["model"]
    assert conv["encoder.0.0.weight"].shape[1] == 3  # grey and RGB files mixed: three channels inferred

    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    evaluated = json.loads(out)["metrics"]
    assert evaluated == m

    Image.fromarray(np.full((24, 40), 200, dtype=np.uint8)).save(tmp_path / "wide.jpg")  # another size and format
    out_png = tmp_path / "recon.png"
    code, out, err = cli("predict", "autoencoder", run_dir, data / "01.png", tmp_path / "wide.jpg", "--model", "vae",
                         "--out", out_png)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"{data / '01.png'}: vae reconstruction MSE ") and len(lines) == 3
    assert plt.imread(out_png).shape[:2] == (2 * 34 + 2,) * 2  # 2 images over 2 reconstructions, 32 px


@pytest.mark.parametrize("args, expected", [
    (["{missing}"], "missing.png: no such file"),
    (["{not_an_image}"], "notes.png: not a readable image"),
    (["{image}", "--out", "{tmp}/recon.jpg"], "give a path ending in .png"),
    (["{image}", "--model", "pca"], "invalid choice: 'pca'"),
])
def test_predict_bad_input_is_one_line_exit_2(own_run, cli, monkeypatch, tmp_path, args, expected):
    run_dir, data, cache = own_run
    monkeypatch.setenv("COOKBOOK_CACHE", str(cache))
    (tmp_path / "notes.png").write_text("not an image")
    args = [a.format(missing=tmp_path / "missing.png", not_an_image=tmp_path / "notes.png", image=data / "01.png",
                     tmp=tmp_path) for a in args]
    code, _, err = cli("predict", "autoencoder", run_dir, *args)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_too_few_images_are_refused_at_launch_and_nothing_is_written(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path / "cache"))
    data = write_images(tmp_path / "photos", n=6)
    code, _, err = cli("run", "autoencoder", "--profile", "smoke", "--data", data, "--runs-root", tmp_path / "runs")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{data}: 6 images; --test_fraction 0.2 holds out 1 and leaves 5 to train on" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))

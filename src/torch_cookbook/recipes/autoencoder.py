"""Autoencoders on Fashion-MNIST: the seed's MLP, a convolutional AE, a denoising AE and a VAE.

Seed Q67 gives an MLP autoencoder (784-128-64-12-3, sigmoid output) and stops there: no data, loss or training.
This recipe trains it exactly as given beside better-suited models, each a variant of one run: a conv AE, the same
conv AE trained to denoise (noisy input, clean target), a conv VAE (reparameterisation, closed-form KL, samples from
the prior); and controls: the MLP with the conv AE's code size, the conv AE with the seed's 3-D code, Kingma &
Welling's 784-400-20 MLP VAE. It reports test MSE per model, the VAEs' test negative ELBO, k-NN (k=5) accuracy on
the codes, and PCA with 3 components as the classical baseline.
On your own images (`--data DIR`, unlabelled): no k-NN, a FID of the VAE's samples in Lite0 features instead.

Docs: docs/autoencoder.md
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from torch_cookbook.data import fashion_mnist, image_sets
from torch_cookbook.engine.config import ON_BUNDLED_DATA, BaseConfig, Target, param
from torch_cookbook.engine.loop import autocast, batches, eval_mode, grad_scaler
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import ConfigError
from torch_cookbook.nn.autoencoder import MLPVAE, VAE, ConvAutoEncoder, MLPAutoEncoder, SeedAutoEncoder, kl_divergence
from torch_cookbook.nn.fid import lite0_fids

seed_question = "Q67 Autoencoder"
summary = "Seed MLP AE vs conv AE at equal codes, denoising AE, conv VAE vs MLP VAE: test MSE, ELBO, k-NN on codes."


@dataclass
class Config(BaseConfig):
    steps: int = param(2000, "training steps per model", low=1)
    mlp_steps: int = param(6000, "steps for the two MLP AEs (0 = --steps): they are cheap and slow to converge", low=0)
    batch_size: int = param(128, "minibatch size", low=2)
    lr: float = param(1e-3, "Adam learning rate", low=0, low_open=True)
    width: int = param(16, "channels of the first conv layer of the conv models (the second has twice)", low=1)
    conv_latent: int = param(32, "code size of the conv and denoising AEs and of their MLP control", low=1)
    vae_latent: int = param(16, "latent size of the VAE", low=1)
    noise_std: float = param(0.3, "std of the Gaussian noise added for the denoising AE (pixels in [0, 1])",
                             low=0, high=1, low_open=True)
    knn_k: int = param(5, "neighbours of the k-NN classifier on latent codes (labelled data only)", low=1)
    eval_every: int = param(500, "log test MSE (on up to 2,000 test images) every N steps", low=1)
    train_subset: int = param(0, "train on the first N training images (0 = all: 60,000, or all of --data's)", low=0)
    eval_subset: int = param(0, "evaluate on the first N test images (0 = all 10,000, or all held out)", low=0)
    data: str = param("", "a folder of your own images (all under it, unlabelled) instead of Fashion-MNIST; see"
                      " docs/autoencoder.md, 'On your own data'")
    image_size: int = param(32, "--data images are centre-cropped and resized to this size", choices=image_sets.SIZES)
    channels: int = param(0, "--data as 1 (grey) or 3 (RGB) channels; 0: 1 if all are grey, else 3", choices=(0, 1, 3))
    test_fraction: float = param(0.2, "share of --data held out (seeded): the test images", low=0.01, high=0.5)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_subset and self.batch_size > self.train_subset:
            raise ConfigError(f"--batch_size {self.batch_size}: larger than --train_subset {self.train_subset}")
        if self.train_subset and self.knn_k > self.train_subset:
            raise ConfigError(f"--knn_k {self.knn_k}: more neighbours than the {self.train_subset} training images")


profiles = {
    "smoke": {"steps": 30, "mlp_steps": 30, "eval_every": 10, "train_subset": 2048, "eval_subset": 512, "width": 4},
    "quick": {"steps": 600, "mlp_steps": 1200, "eval_every": 100, "eval_subset": 5000},
    "full": {},
}

targets = [
    Target("mse_ratio_mlp_wide_over_conv", ">=", 2.0, when=ON_BUNDLED_DATA),  # conv AE vs MLP AE, both 32-D codes
    Target("mlp_knn_accuracy", ">=", 0.70, when=ON_BUNDLED_DATA),  # k-NN on the seed model's 3-D codes
    Target("nelbo_mlp_vae_minus_vae", ">=", 0.0, when=ON_BUNDLED_DATA),  # conv VAE's test -ELBO below the MLP VAE's
]

MODELS = ("mlp", "conv", "denoising", "vae", "mlp_wide", "conv3", "mlp_vae")  # the variants, trained in this order
VAES = ("vae", "mlp_vae")
SEED_CODE = 3  # the seed MLP's code size, given to the conv3 control
DATA_FIELDS = {"data": ()}  # the run records your folder's SHA-256 (data.json); eval, predict, resume check it
LIMIT = 10_000  # your data: at most this many images fit PCA-3, and on each side of a FID


# ---- the technique: what each model minimises ------------------------------------------------------
def vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The VAE's negative ELBO: (loss, reconstruction, KL), each the mean over the batch of per-image sums (nats).

    The reconstruction term is the Bernoulli negative log-likelihood of the pixels given the decoder's logits,
    summed over pixels: averaging over pixels instead (as `mse_loss` does by default) would weight the KL term
    784 times too much. The KL of q(z|x) = N(mu, exp(logvar)) from the prior N(0, I) is in closed form.
    """
    recon = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
    kl = kl_divergence(mu, logvar).mean()
    return recon + beta * kl, recon, kl


def training_loss(name: str, model: nn.Module, inputs: torch.Tensor,
                  clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(loss, KL or None): the negative ELBO for the VAEs, else the MSE of the reconstruction of `inputs`
    against the clean images (the denoising AE's inputs are noisy, its targets are not)."""
    if name in VAES:
        logits, mu, logvar = model(inputs)  # z = mu + sigma * eps inside: the reparameterisation
        loss, _, kl = vae_loss(logits.float(), clean, mu.float(), logvar.float())
        return loss, kl
    return nn.functional.mse_loss(model.reconstruct(inputs).float(), clean), None


def add_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian pixel noise, clipped back to valid pixels: the denoising AE's corruption."""
    return (x + std * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def build(name: str, cfg: Config, channels: int = 1) -> nn.Module:
    torch.manual_seed(cfg.seed)  # every model starts from the same seed's stream
    size = image_size(cfg)
    if name in ("mlp", "mlp_wide"):
        pixels = channels * size * size
        return SeedAutoEncoder(pixels) if name == "mlp" else MLPAutoEncoder(cfg.conv_latent, pixels)
    if name in VAES:
        return VAE(cfg.vae_latent, cfg.width, size, channels) if name == "vae" else MLPVAE(20, 400, size, channels)
    return ConvAutoEncoder(SEED_CODE if name == "conv3" else cfg.conv_latent, cfg.width, size, channels)


# ---- train ---------------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    data = load_data(cfg)
    if len(data[0]) < cfg.batch_size:
        raise ConfigError(f"--batch_size {cfg.batch_size}: larger than the {len(data[0])} training images")
    for name in MODELS:
        if (sub := run.variant(name)).result is None:  # resume: a finished variant is not trained again
            train_variant(cfg, sub, name, data)

    models = {name: load_model(cfg, run, name, data[0].shape[1]) for name in MODELS}
    metrics = measure(cfg, models, data, run.device)
    plot_reconstructions(cfg, run, models, data[2])
    plot_latent_space(cfg, run, models["mlp"], data[2], data[3])
    plot_vae_samples(cfg, run, models)
    plot_curves(run)
    return named(cfg, metrics)


def named(cfg: Config, metrics: dict[str, float]) -> dict[str, float]:
    """Your data's metrics are user_*, as textclass names them: the targets are claims about Fashion-MNIST."""
    return {f"user_{k}": v for k, v in metrics.items()} if cfg.data else metrics


def check_launch(cfg: Config) -> None:
    if cfg.data:  # read and split your images before the run directory exists: bad data writes nothing
        read_images(cfg)


def read_images(cfg: Config) -> image_sets.ImageSet:
    return image_sets.read(cfg.data, cfg.image_size, cfg.channels, cfg.seed, cfg.test_fraction, cfg.batch_size)


def image_size(cfg: Config) -> int:
    return cfg.image_size if cfg.data else 28  # Fashion-MNIST is 28×28


def load_data(cfg: Config) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """(x_train, y_train, x_test, y_test) in [0, 1]; your images: no labels, training part uint8 (scaled per batch)."""
    if not cfg.data:
        return fashion_mnist.subsets(cfg.train_subset, cfg.eval_subset, normalize=False)
    images = read_images(cfg)
    return images.train[:cfg.train_subset or None], None, image_sets.unit(images.test[:cfg.eval_subset or None]), None


def train_variant(cfg: Config, run: Run, name: str, data: tuple) -> dict[str, float]:
    x_train, _, x_test, _ = data
    device = run.device
    steps = (cfg.mlp_steps or cfg.steps) if name in ("mlp", "mlp_wide") else cfg.steps
    model = build(name, cfg, x_train.shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    trainer = Trainer(run, steps, every=cfg.eval_every, description=f"autoencoder {name}", model=model,
                      optimizer=optimizer, scaler=grad_scaler(device, cfg.amp))

    model.train()
    for step, idx in trainer.steps(batches(len(x_train), cfg.batch_size, cfg.seed, trainer.start)):
        clean = image_sets.unit(x_train[idx])
        # The denoising AE sees a fresh noisy copy each step and must reproduce the clean image.
        inputs = add_noise(clean, cfg.noise_std) if name == "denoising" else clean
        clean, inputs = clean.to(device), inputs.to(device)
        with autocast(device, cfg.amp):
            loss, kl = training_loss(name, model, inputs, clean)
        trainer.backward(loss)
        done = step + 1
        if done % cfg.eval_every == 0 or done == steps:
            record = {"train/loss": loss.item(), "eval/mse": test_mse(model, x_test[:2000], device)}
            if kl is not None:
                record["train/kl"] = kl.item()
            run.log(record, done)
    return run.finish({"test_mse": test_mse(model, x_test, device), "steps": steps})


# ---- evaluate ------------------------------------------------------------------------------------
@torch.no_grad()
def test_mse(model: nn.Module, x: torch.Tensor, device: torch.device, target: torch.Tensor | None = None,
             batch: int = 1000) -> float:
    """MSE per pixel of x's reconstructions (eval mode; VAE: posterior mean) against `target`, by default x."""
    total, target = 0.0, x if target is None else target
    with eval_mode(model):
        for i in range(0, len(x), batch):
            recon = model.reconstruct(x[i:i + batch].to(device)).float().cpu()
            total += (recon - target[i:i + batch]).pow(2).sum().item()
    return total / x.numel()


@torch.no_grad()
def codes(model: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 2000) -> torch.Tensor:
    model.eval()
    return torch.cat([model.encode(x[i:i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])


def knn_accuracy(train_codes: torch.Tensor, y_train: torch.Tensor, test_codes: torch.Tensor,
                 y_test: torch.Tensor, k: int) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=k).fit(train_codes.numpy(), y_train.numpy())
    return float((knn.predict(test_codes.numpy()) == y_test.numpy()).mean())


@torch.no_grad()
def measure(cfg: Config, models: dict[str, nn.Module], data: tuple, device: torch.device) -> dict[str, float]:
    """Test MSE and k-NN per model, denoising, the VAEs' ELBO, PCA-3 (baseline); your images: a FID, no k-NN."""
    x_train, y_train, x_test, y_test = data
    out: dict[str, float] = {}
    for name, model in models.items():
        out[f"{name}_test_mse"] = test_mse(model, x_test, device)
    out["mse_ratio_mlp_over_conv"] = out["mlp_test_mse"] / out["conv_test_mse"]  # 3-D code over 32-D
    out["mse_ratio_mlp_over_conv3"] = out["mlp_test_mse"] / out["conv3_test_mse"]  # both 3-D
    out["mse_ratio_mlp_wide_over_conv"] = out["mlp_wide_test_mse"] / out["conv_test_mse"]  # both --conv_latent
    for name, model in models.items() if y_train is not None else ():
        out[f"{name}_knn_accuracy"] = knn_accuracy(codes(model, x_train, device), y_train,
                                                   codes(model, x_test, device), y_test, cfg.knn_k)

    # Denoising: the same noisy test images (fixed generator) through the plain and the denoising conv AE.
    noisy = add_noise(x_test, cfg.noise_std, torch.Generator().manual_seed(cfg.seed + 2))
    out["noisy_input_mse"] = (noisy - x_test).pow(2).mean().item()
    for name in ("conv", "denoising"):
        out[f"{name}_on_noisy_mse"] = test_mse(models[name], noisy, device, x_test)

    for name in VAES:  # nats per image
        mu, logvar = models[name].eval().posterior(x_test.to(device))
        out[f"{name}_test_kl"] = kl_divergence(mu, logvar).mean().item()
        out[f"{name}_test_nelbo"] = negative_elbo(models[name], x_test, device, cfg.seed + 4)
    out["nelbo_mlp_vae_minus_vae"] = out["mlp_vae_test_nelbo"] - out["vae_test_nelbo"]
    # Grey levels as Bernoulli means: even a perfect decoder pays the pixels' own entropy, the same for both VAEs.
    out["test_pixel_entropy"] = nn.functional.binary_cross_entropy(x_test, x_test, reduction="sum").item() / len(x_test)

    # Classical baseline: PCA with as many components as the seed's code (3), fitted on the train set (your images:
    # on at most LIMIT of them, a random pick, by the randomised solver: a large folder is never one matrix).
    from sklearn.decomposition import PCA

    labelled = y_train is not None
    fit = x_train if labelled else image_sets.unit(x_train[:LIMIT])
    solver = {"svd_solver": "full"} if labelled else {"svd_solver": "randomized", "random_state": cfg.seed}
    pca = PCA(n_components=3, **solver).fit(fit.flatten(1).numpy())
    test_pca = pca.transform(x_test.flatten(1).numpy())
    recon = torch.from_numpy(pca.inverse_transform(test_pca)).float().clamp(0, 1)
    out["pca3_test_mse"] = (recon - x_test.flatten(1)).pow(2).mean().item()
    if not labelled:
        return {**out, **vae_fid(cfg, models["vae"], x_train, x_test)}
    out["pca3_knn_accuracy"] = knn_accuracy(torch.from_numpy(pca.transform(x_train.flatten(1).numpy())), y_train,
                                            torch.from_numpy(test_pca), y_test, cfg.knn_k)
    return out


@torch.no_grad()
def negative_elbo(vae: nn.Module, x: torch.Tensor, device: torch.device, seed: int, batch: int = 1000) -> float:
    """The negative ELBO in nats per image over x: one z ~ q(z|x) per image, its noise seeded so eval repeats it."""
    noise, total = torch.Generator().manual_seed(seed), 0.0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].to(device)
        logits, mu, logvar = vae.eval()(xb, torch.randn(len(xb), vae.latent, generator=noise).to(device))
        total += vae_loss(logits.float(), xb, mu.float(), logvar.float())[0].item() * len(xb)
    return total / len(x)


@torch.no_grad()
def vae_fid(cfg: Config, vae: VAE, x_train: torch.Tensor, x_test: torch.Tensor) -> dict[str, float]:
    """FID (Lite0 features) of VAE samples against held-out images; the floor: training images; k of each."""
    k, gen = min(len(x_test), LIMIT), torch.Generator().manual_seed(cfg.seed + 3)
    samples = (vae.eval().sample(min(1000, k - i), gen).float().cpu() for i in range(0, k, 1000))
    floor, fid = lite0_fids(x_test[:k], x_train[:k], samples)
    return {"vae_fid": fid, "fid_floor": floor, "vae_fid_ratio": fid / floor, "fid_images": k}


def load_model(cfg: Config, run: Run, name: str, channels: int = 1) -> nn.Module:
    model = build(name, cfg, channels)
    run.variant(name).load(model)
    return model.to(run.device).eval()


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Every measured number, recomputed from the variants' saved checkpoints."""
    data = load_data(cfg)
    models = {name: load_model(cfg, run, name, data[0].shape[1]) for name in MODELS}
    return named(cfg, measure(cfg, models, data, run.device))


# ---- plots ---------------------------------------------------------------------------------------
def _show_rows(rows: list[tuple[str, torch.Tensor]], path, title: str) -> None:
    n = rows[0][1].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0 + 0.4), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(image_sets.picture(images[c]), cmap="gray", vmin=0, vmax=1)  # cmap: grey images only
            ax.set(xticks=[], yticks=[])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@torch.no_grad()
def plot_reconstructions(cfg: Config, run: Run, models: dict[str, nn.Module], x_test: torch.Tensor) -> None:
    if not run.is_main:
        return
    x = x_test[:10]
    noisy = add_noise(x, cfg.noise_std, torch.Generator().manual_seed(cfg.seed + 2))
    code = f"{cfg.conv_latent}-D"
    labels = {"mlp": "seed MLP, 3-D", "conv3": "conv AE, 3-D", "mlp_wide": f"MLP, {code}", "conv": f"conv AE, {code}",
              "vae": "conv VAE", "mlp_vae": "MLP VAE"}
    rows = [("test image", x)] + [(label, models[name].reconstruct(x.to(run.device)).cpu())
                                  for name, label in labels.items()]
    rows += [("noisy input", noisy), ("denoising AE", models["denoising"].reconstruct(noisy.to(run.device)).cpu())]
    _show_rows(rows, run.plot_path("reconstructions"), "test images and their reconstructions")


@torch.no_grad()
def plot_latent_space(cfg: Config, run: Run, model: nn.Module, x_test: torch.Tensor,
                      y_test: torch.Tensor | None) -> None:
    if not run.is_main:
        return
    z = codes(model, x_test, run.device).numpy()
    fig = plt.figure(figsize=(8, 6.5))
    ax = fig.add_subplot(projection="3d")
    # At most 400 per class (your images, unlabelled: 4,000 in one colour) keeps the plot readable.
    groups = ([(fashion_mnist.CLASSES[c], z[(y_test == c).numpy()][:400]) for c in range(10)] if y_test is not None
              else [(None, z[:4000])])
    for c, (label, pts) in enumerate(groups):
        ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=3, color=plt.get_cmap("tab10")(c), label=label)
    ax.set(xlabel="z1", ylabel="z2", zlabel="z3", title="seed MLP autoencoder: 3-D codes of test images")
    if y_test is not None:
        ax.legend(markerscale=4, fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(run.plot_path("latent_space_3d"), dpi=90)
    plt.close(fig)


def plot_vae_samples(cfg: Config, run: Run, models: dict[str, nn.Module]) -> None:
    """64 samples decoded from the prior N(0, I) by each VAE (the same generator seed for both)."""
    for name in VAES if run.is_main else ():
        images = models[name].eval().sample(64, torch.Generator().manual_seed(cfg.seed)).cpu()
        image_sets.save_image_grid(images, run.plot_path(f"{name}_samples"), nrow=8)


def plot_curves(run: Run) -> None:
    if not run.is_main:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in MODELS:
        ax.plot(*zip(*run.variant(name).history("eval/mse")), label=name)
    ax.set(xlabel="training step", ylabel="test MSE per pixel", yscale="log", title="reconstruction error")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("learning_curves"), dpi=100)
    plt.close(fig)


# ---- predict: reconstruct your images ------------------------------------------------------------
def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files, any size, grey or RGB (at most 64)")
    parser.add_argument("--model", choices=MODELS, default="conv", help="the autoencoder that reconstructs them")
    parser.add_argument("--out", type=Path, help="PNG: images over reconstructions [RUN_DIR/plots/predicted.png]")


@torch.no_grad()
def predict(cfg: Config, run: Run, args: argparse.Namespace) -> Path:
    """Each image read as the run's training images were (28×28 grey for Fashion-MNIST), then reconstructed."""
    if len(args.images) > 64:
        raise ConfigError(f"{len(args.images)} images: at most 64 per call")
    out = image_sets.output_png(args.out, run.dir / "plots" / "predicted.png")
    channels = image_sets.image_channels(cfg.data, cfg.channels) if cfg.data else 1
    x = image_sets.read_files(args.images, image_size(cfg), channels)
    recon = load_model(cfg, run, args.model, channels).reconstruct(x.to(run.device)).float().cpu()
    image_sets.save_image_grid(torch.cat([x, recon]), out, nrow=len(x))
    for path, mse in zip(args.images, (recon - x).pow(2).flatten(1).mean(1).tolist()):
        print(f"{path}: {args.model} reconstruction MSE {mse:.5f}")
    print(f"wrote {len(x)} images (top row) and their reconstructions (bottom row) to {out}")
    return out

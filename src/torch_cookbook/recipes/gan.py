"""DCGAN on Fashion-MNIST with the non-saturating generator loss, measured by FID and mode coverage.

Each step updates D to tell real images (label 1) from G's detached fakes (label 0), then updates G to
make D call its fakes real: G minimises BCE(D(G(z)), 1) = -log D(G(z)), the non-saturating loss, instead
of the minimax log(1 - D(G(z))), whose gradient vanishes exactly when G is bad. Quality is measured, not
eyeballed: FID in the feature space of a Fashion-MNIST classifier (Inception weights cannot be downloaded
here) beside the real-train-vs-real-test floor, and the class histogram of the samples (mode coverage).
On your own folder of images (`--data DIR`, 32 or 64 pixels, grey or RGB, unlabelled) FID is measured in
EfficientNet-Lite0's ImageNet features against held-out images, beside the same floor; no class histogram.

Docs: docs/gan.md
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from torch_cookbook.data import fashion_mnist, image_sets
from torch_cookbook.engine.config import ON_BUNDLED_DATA, BaseConfig, Target, param
from torch_cookbook.engine.loop import autocast, batches, eval_mode, grad_scaler, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import ConfigError
from torch_cookbook.nn.fid import fids, frechet_distance, image_features, lite0_fids, lite0_instrument
from torch_cookbook.nn.fmnist_features import (
    FashionClassifier,
    FeatureExtractor,
    cached_classifier,
    load_classifier,
    save_classifier,
)
from torch_cookbook.nn.gan import Discriminator, Generator, dcgan_init, generate_batches

seed_question = "Q31 GAN"
summary = "DCGAN on Fashion-MNIST (non-saturating loss): FID vs the real-data floor, mode coverage, sample grids."


@dataclass
class Config(BaseConfig):
    steps: int = param(12000, "training steps (one D update and one G update each)", low=1)
    batch_size: int = param(64, "minibatch size", low=2)
    latent_dim: int = param(64, "size of the noise vector z", low=1)
    g_width: int = param(16, "generator width (channels of its last hidden layer / 2)", low=1)
    d_width: int = param(16, "discriminator width (channels of its first layer / 2)", low=1)
    lr_g: float = param(2e-4, "Adam learning rate of G", low=0, low_open=True)
    lr_d: float = param(2e-4, "Adam learning rate of D", low=0, low_open=True)
    beta1: float = param(0.5, "Adam beta1 (DCGAN uses 0.5: less momentum suits the moving target)", low=0, high=1,
                         high_open=True)
    log_every: int = param(50, "log losses every N steps", low=1)
    train_subset: int = param(0, "train on the first N images (0 = all 60,000)", low=0)
    eval_samples: int = param(10000, "generated samples for FID and the class histogram", low=2)
    fid_real: int = param(10000, "real test images (and real train images for the floor) in FID", low=2, high=10000)
    grid_size: int = param(64, "samples in the fixed-noise grid saved every epoch", low=1, high=400)
    dev_fid_every: int = param(0, "log a development FID every N steps (0 = off): dev_fid_samples samples against"
                               " fid_real real *training* images, never the test images the result reports; for"
                               " choosing a budget or a setting", low=0)
    dev_fid_samples: int = param(2000, "generated samples per development FID (FID grows as samples shrink: compare"
                                 " only at one count)", low=2)
    data: str = param("", "a folder of your own images (all under it, unlabelled) instead of Fashion-MNIST; see"
                      " docs/gan.md, 'On your own data'")
    image_size: int = param(32, "--data images are centre-cropped and resized to this size", choices=image_sets.SIZES)
    channels: int = param(0, "--data as 1 (grey) or 3 (RGB) channels; 0: 1 if all are grey, else 3", choices=(0, 1, 3))
    test_fraction: float = param(0.2, "share of --data held out (seeded): the real side of FID and of the floor",
                                 low=0.01, high=0.5)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_subset and self.batch_size > self.train_subset:
            raise ConfigError(f"--batch_size {self.batch_size}: larger than --train_subset {self.train_subset}")


profiles = {
    "smoke": {"steps": 24, "batch_size": 32, "train_subset": 256, "log_every": 4, "eval_samples": 500,
              "fid_real": 500, "g_width": 4, "d_width": 4, "grid_size": 16},
    "quick": {"steps": 500, "eval_samples": 5000, "fid_real": 5000},
    "full": {},
}

targets = [
    Target("fid_ratio", "<=", 5.0, when=ON_BUNDLED_DATA),  # FID within 5× the real-train-vs-real-test floor
    Target("min_class_fraction", ">=", 0.05, when=ON_BUNDLED_DATA),  # every class at least 5% of the samples
    Target("kl_to_uniform", "<=", 0.05, when=ON_BUNDLED_DATA),  # class histogram close to uniform: no mode collapse
]

DATA_FIELDS = {"data": ()}  # the run records your folder's SHA-256 (data.json); eval, predict, resume check it
bce = nn.functional.binary_cross_entropy_with_logits  # from logits: log-sigmoid never rounds to log 0


# ---- the technique: one D step, one G step -------------------------------------------------------
def d_step(trainer: Trainer, d: Discriminator, opt_d: torch.optim.Optimizer, scaler_d: torch.amp.GradScaler,
           real: torch.Tensor, fake: torch.Tensor, amp: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Update D: real → 1, fake → 0. The fakes are detached: this step must not move G.

    Returns D's loss and its logits on the real and the fake batch."""
    ones = torch.ones(len(real), device=real.device)
    zeros = torch.zeros(len(real), device=real.device)
    with autocast(real.device, amp):
        d_real, d_fake = d(real), d(fake.detach())
        loss = bce(d_real, ones) + bce(d_fake, zeros)
    trainer.backward(loss, opt_d, scaler_d, name="d_loss")
    return loss, d_real, d_fake


def g_step(trainer: Trainer, d: Discriminator, opt_g: torch.optim.Optimizer, scaler_g: torch.amp.GradScaler,
           fake: torch.Tensor, amp: str) -> torch.Tensor:
    """Update G, non-saturating: maximise log D(G(z)) (labels 1), not minimise log(1 - D(G(z))).

    The gradient flows back through D into G, but only G's optimizer steps; the gradients this leaves on D
    are cleared by D's next step."""
    with autocast(fake.device, amp):
        loss = bce(d(fake), torch.ones(len(fake), device=fake.device))
    trainer.backward(loss, opt_g, scaler_g, name="g_loss")
    return loss


def build_models(cfg: Config, device: torch.device, channels: int = 1) -> tuple[Generator, Discriminator]:
    """G and D with the DCGAN initialisation, N(0, 0.02) weights, from the seed."""
    torch.manual_seed(cfg.seed)
    g = Generator(cfg.latent_dim, cfg.g_width, image_size(cfg), channels)
    d = Discriminator(cfg.d_width, image_size(cfg), channels)
    g.apply(dcgan_init)
    d.apply(dcgan_init)
    # channels_last (NHWC) for the (transposed) convolutions: fewer layout reorders on CPU (docs/performance.md).
    return g.to(device, memory_format=torch.channels_last), d.to(device, memory_format=torch.channels_last)


# ---- train ---------------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    data, x_train = load_data(cfg)
    if len(x_train) < cfg.batch_size:
        raise ConfigError(f"--batch_size {cfg.batch_size}: larger than the {len(x_train)} training images")
    classifier, classifier_accuracy = (None, None) if cfg.data else instrument(run, data)
    device = run.device
    g, d = build_models(cfg, device, channels=x_train.shape[1])

    # fused: one kernel for the whole update instead of several passes per parameter (same algorithm).
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, 0.999), fused=True)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, 0.999), fused=True)
    scaler_g, scaler_d = grad_scaler(device, cfg.amp), grad_scaler(device, cfg.amp)
    trainer = Trainer(run, cfg.steps, every=cfg.log_every * 4, log_every=cfg.log_every, g=g, d=d, opt_g=opt_g,
                      opt_d=opt_d, scaler_g=scaler_g, scaler_d=scaler_d)
    fixed_z = torch.randn(cfg.grid_size, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed))
    steps_per_epoch = len(x_train) // cfg.batch_size
    if cfg.dev_fid_every:
        dev_fid = development_fid(cfg, data, classifier)

    g.train()
    d.train()
    for step, idx in trainer.steps(batches(len(x_train), cfg.batch_size, cfg.seed, trainer.start)):
        (real,) = take(idx, x_train, device=device)
        real = to_tanh_range(real)
        z = torch.randn(len(idx), cfg.latent_dim, device=device)
        with autocast(device, cfg.amp):
            fake = g(z)
        d_loss, d_real, d_fake = d_step(trainer, d, opt_d, scaler_d, real, fake, cfg.amp)
        g_loss = g_step(trainer, d, opt_g, scaler_g, fake, cfg.amp)

        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            run.log({"train/d_loss": d_loss.item(), "train/g_loss": g_loss.item(),
                     "train/d_real": torch.sigmoid(d_real).mean().item(),
                     "train/d_fake": torch.sigmoid(d_fake).mean().item()}, done)
        if cfg.dev_fid_every and (done % cfg.dev_fid_every == 0 or done == cfg.steps):
            # Samples from a noise stream of their own and G in eval mode: training's RNG and BN are untouched.
            run.log({"eval/dev_fid": dev_fid(generate(g, cfg.dev_fid_samples, cfg.seed + 2, device))}, done)
        if done % steps_per_epoch == 0 or done == cfg.steps:
            save_grid(g, fixed_z, run.plot_path(f"samples_epoch{math.ceil(done / steps_per_epoch):02d}"), run)

    metrics = measure_own(cfg, g, data, device) if cfg.data else measure(cfg, g, classifier, data, device)
    save_grid(g, fixed_z, run.plot_path("samples"), run)
    plot_losses(run)
    if cfg.data:
        return metrics  # no labels: no classifier, no class histogram
    plot_histogram(run, metrics)
    return {**metrics, "classifier_test_accuracy": classifier_accuracy}


def check_launch(cfg: Config) -> None:
    if cfg.data:  # read and split your images before the run directory exists: bad data writes nothing
        read_images(cfg)


def read_images(cfg: Config) -> image_sets.ImageSet:
    return image_sets.read(cfg.data, cfg.image_size, cfg.channels, cfg.seed, cfg.test_fraction, cfg.batch_size)


def image_size(cfg: Config) -> int:
    return cfg.image_size if cfg.data else 28  # Fashion-MNIST is 28×28


def load_data(cfg: Config) -> tuple[fashion_mnist.FashionMNIST | image_sets.ImageSet, torch.Tensor]:
    """The data set (its test or held-out images are FID's real side) and the training images: Fashion-MNIST in
    [-1, 1], like tanh; your images as uint8, scaled batch by batch (`to_tanh_range`), so memory holds bytes."""
    if cfg.data:
        images = read_images(cfg)
        return images, images.train[:cfg.train_subset or None]
    data = fashion_mnist.load()
    n = cfg.train_subset or len(data.train_labels)
    return data, fashion_mnist.as_float(data.train_images[:n], normalize=False) * 2 - 1


def to_tanh_range(x: torch.Tensor) -> torch.Tensor:
    return image_sets.unit(x) * 2 - 1 if x.dtype == torch.uint8 else x


def instrument(run: Run, data: fashion_mnist.FashionMNIST) -> tuple[FashionClassifier, float]:
    """The classifier that measures FID and coverage: the run's own copy if it has one, else the cached one."""
    path = run.dir / "checkpoints" / "feature_classifier.pt"
    if path.exists():
        return load_classifier(path)
    model, accuracy = cached_classifier(data)
    if run.is_main:
        save_classifier(model, accuracy, path)
    return model, accuracy


# ---- evaluate ------------------------------------------------------------------------------------
def generate(g: Generator, n: int, seed: int, device: torch.device) -> torch.Tensor:
    """n samples in [0, 1] from G in eval mode (BN running statistics), from a noise stream of their own."""
    return torch.cat(list(generate_batches(g, n, seed, device)))


def development_fid(cfg: Config, data: fashion_mnist.FashionMNIST | image_sets.ImageSet,
                    classifier: FashionClassifier | None) -> Callable[[torch.Tensor], float]:
    """samples → their FID against fid_real real *training* images, whose features are computed once."""
    if cfg.data:
        model = lite0_instrument()
        real = image_features(model, data.train[:cfg.fid_real])
        return lambda fakes: frechet_distance(real, image_features(model, fakes))
    extractor, real = FeatureExtractor(classifier), real_train_images(cfg, data)
    return lambda fakes: fids(extractor, real, fakes)[0]


def real_train_images(cfg: Config, data: fashion_mnist.FashionMNIST) -> torch.Tensor:
    """fid_real training images in [0, 1], a seeded random pick: the floor's real side and the development FID's."""
    pick = torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(cfg.seed))
    return fashion_mnist.as_float(data.train_images[pick[:cfg.fid_real]], normalize=False)


@torch.no_grad()
def measure(cfg: Config, g: Generator, classifier: FashionClassifier, data: fashion_mnist.FashionMNIST,
            device: torch.device) -> dict[str, float]:
    """FID against real test images, the floor (real train vs real test), the baseline (G before training,
    rebuilt from the seed) and the class histogram of the samples."""
    extractor = FeatureExtractor(classifier)
    real_test = fashion_mnist.as_float(data.test_images[:cfg.fid_real], normalize=False)
    real_train = real_train_images(cfg, data)
    with torch.random.fork_rng(devices=[]):  # rebuilding the initial G must not move the caller's RNG
        untrained = build_models(cfg, device)[0]
    fakes = generate(g, cfg.eval_samples, cfg.seed + 1, device)
    fid_fake, floor, fid_untrained = fids(extractor, real_test, fakes, real_train,
                                          generate(untrained, cfg.eval_samples, cfg.seed + 1, device))

    classes = torch.cat([classifier(fakes[i:i + 1000]).argmax(1) for i in range(0, len(fakes), 1000)])
    frac = torch.bincount(classes, minlength=10).double() / len(classes)
    kl = (frac * (frac.clamp_min(1e-12) * 10).log()).sum().item()  # KL(p || uniform), 0·log 0 = 0
    out = {"fid": fid_fake, "fid_floor": floor, "fid_ratio": fid_fake / floor, "kl_to_uniform": kl,
           "min_class_fraction": frac.min().item(), "max_class_fraction": frac.max().item(),
           "fid_untrained_generator": fid_untrained}
    out.update({f"class_fraction_{i}": frac[i].item() for i in range(10)})
    return out


@torch.no_grad()
def measure_own(cfg: Config, g: Generator, images: image_sets.ImageSet, device: torch.device) -> dict[str, float]:
    """Your images have no labels, so no classifier measures them: FID in EfficientNet-Lite0's ImageNet features
    against the held-out images (at most fid_real). The floor and the samples use the same counts: as many
    training images as samples (eval_samples, at most all of them). Each set's features are computed once."""
    n = min(cfg.eval_samples, len(images.train))
    with torch.random.fork_rng(devices=[]):  # rebuilding the initial G must not move the caller's RNG
        untrained = build_models(cfg, device, images.channels)[0]
    # The same noise through the trained and the untrained G.
    floor, fid, fid_untrained = lite0_fids(images.test[:cfg.fid_real], images.train[:n],
                                           generate_batches(g, n, cfg.seed + 1, device),
                                           generate_batches(untrained, n, cfg.seed + 1, device))
    # Named user_*, as textclass names them: the targets are claims about Fashion-MNIST.
    return {"user_fid": fid, "user_fid_floor": floor, "user_fid_ratio": fid / floor,
            "user_fid_untrained_generator": fid_untrained, "user_fid_generated_images": n,
            "user_fid_held_out_images": min(cfg.fid_real, len(images.test))}


def load_generator(cfg: Config, run: Run, channels: int = 1) -> Generator:
    g = Generator(cfg.latent_dim, cfg.g_width, image_size(cfg), channels)
    run.load(g, name="g")
    return g.to(run.device).eval()


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """FID, floor and coverage recomputed from the saved generator and the run's classifier copy (your images: FID
    and floor in Lite0's features)."""
    data, x_train = load_data(cfg)
    if cfg.data:
        return measure_own(cfg, load_generator(cfg, run, x_train.shape[1]), data, run.device)
    classifier, _ = instrument(run, data)
    return measure(cfg, load_generator(cfg, run), classifier, data, run.device)


# ---- plots ---------------------------------------------------------------------------------------
def save_grid(g: Generator, z: torch.Tensor, path: Path, run: Run) -> None:
    if not run.is_main:
        return
    with eval_mode(g), torch.no_grad():
        images = ((g(z.to(run.device)).float().cpu() + 1) / 2).clamp(0, 1)
    image_sets.save_image_grid(images, path)


def plot_losses(run: Run) -> None:
    if not run.is_main:
        return
    dev_fid = run.history("eval/dev_fid")
    fig, axes = plt.subplots(1, 3 if dev_fid else 2, figsize=(15 if dev_fid else 10, 4))
    ax1, ax2 = axes[:2]
    if dev_fid:
        axes[2].plot(*zip(*dev_fid), marker="o")
        axes[2].set(xlabel="step", ylabel="FID vs real training images", yscale="log",
                    title="development FID (--dev_fid_every)")
    for key, label in (("train/d_loss", "D loss"), ("train/g_loss", "G loss (non-saturating)")):
        curve = run.history(key)
        if curve:
            ax1.plot(*zip(*curve), label=label)
    for key, label in (("train/d_real", "D(x), real"), ("train/d_fake", "D(G(z)), fake")):
        curve = run.history(key)
        if curve:
            ax2.plot(*zip(*curve), label=label)
    ax1.set(xlabel="step", ylabel="loss", title="GAN losses")
    ax2.set(xlabel="step", ylabel="mean probability", ylim=(0, 1), title="discriminator outputs")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("losses"), dpi=100)
    plt.close(fig)


def plot_histogram(run: Run, metrics: dict[str, float]) -> None:
    if not run.is_main:
        return
    fig, ax = plt.subplots(figsize=(8, 3.8))
    fractions = [metrics[f"class_fraction_{i}"] for i in range(10)]
    ax.bar(range(10), fractions, color="tab:blue")
    ax.axhline(0.1, color="grey", linewidth=0.8, label="uniform")
    ax.axhline(0.05, color="tab:red", linewidth=0.8, linestyle="--", label="target minimum 5%")
    ax.set_xticks(range(10), fashion_mnist.CLASSES, rotation=30, ha="right")
    ax.set(ylabel="fraction of samples",
           title=f"classes of generated samples (KL to uniform {metrics['kl_to_uniform']:.3f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("class_histogram"), dpi=100)
    plt.close(fig)


# ---- predict: new samples ------------------------------------------------------------------------
def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=64, help="how many samples (1-1024)")
    parser.add_argument("--out", type=Path, default=None, help="PNG file to write [RUN_DIR/plots/predicted.png]")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the noise")


def predict(cfg: Config, run: Run, args: argparse.Namespace) -> Path:
    if not 1 <= args.n <= 1024:
        raise ConfigError(f"--n {args.n}: out of range, allowed [1, 1024]")
    out = image_sets.output_png(args.out, run.dir / "plots" / "predicted.png")
    g = load_generator(cfg, run, image_sets.image_channels(cfg.data, cfg.channels) if cfg.data else 1)
    image_sets.save_image_grid(generate(g, args.n, args.sample_seed, run.device), out)
    print(f"wrote {args.n} samples to {out}")
    return out

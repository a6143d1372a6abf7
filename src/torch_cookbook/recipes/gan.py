"""DCGAN on Fashion-MNIST with the non-saturating generator loss, measured against the textbook MLP GAN.

Each step updates D to tell real images (label 1) from G's detached fakes (label 0), then updates G to make D call
its fakes real: G minimises BCE(D(G(z)), 1) = -log D(G(z)), the non-saturating loss, instead of the minimax
log(1 - D(G(z))), whose gradient vanishes exactly when G is bad. A fully connected GAN, tuned and given the same CPU
time, is the baseline. FID is measured in a Fashion-MNIST classifier's features (no Inception weights here), beside a
ladder of real images under noise and blur, with k-NN precision/recall and the class histogram (mode coverage).
On your own folder of images (`--data DIR`, 32 or 64 pixels, grey or RGB, unlabelled) FID is measured in
EfficientNet-Lite0's ImageNet features against held-out images, beside the same floor; no class histogram.

Docs: docs/gan.md
"""

from __future__ import annotations

import argparse
import math
import time
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
from torch_cookbook.nn.fid import fids, lite0_fid_to, lite0_fids
from torch_cookbook.nn.fmnist_features import FashionClassifier, FeatureExtractor, run_classifier
from torch_cookbook.nn.gan import ARCHITECTURES, generate_batches, generate_samples, make_gan
from torch_cookbook.nn.sample_quality import calibration_ladder, classifier_sample_quality

seed_question = "Q31 GAN"
summary = "DCGAN vs the textbook MLP GAN on Fashion-MNIST, same CPU time: FID, its calibration ladder, coverage."


@dataclass
class Config(BaseConfig):
    steps: int = param(12000, "DCGAN training steps (one D update and one G update each)", low=1)
    batch_size: int = param(64, "minibatch size", low=2)
    latent_dim: int = param(64, "size of the noise vector z", low=1)
    g_width: int = param(16, "generator width (channels of its last hidden layer / 2)", low=1)
    d_width: int = param(16, "discriminator width (channels of its first layer / 2)", low=1)
    lr_g: float = param(2e-4, "Adam learning rate of G", low=0, low_open=True)
    lr_d: float = param(2e-4, "Adam learning rate of D", low=0, low_open=True)
    beta1: float = param(0.5, "Adam beta1 (0.5: less momentum suits the moving target)", low=0, high=1, high_open=True)
    models: list[str] = param(list(ARCHITECTURES), "which GANs to train: the DCGAN, the MLP GAN baseline",
                              choices=ARCHITECTURES)
    mlp_steps: int = param(47000, "MLP GAN steps: the DCGAN's training CPU time on the reference CPU", low=1)
    mlp_width: int = param(64, "MLP GAN width w: G's hidden layers w, 2w, 4w, 8w; D's 4w, 2w", low=1)
    mlp_lr: float = param(2e-4, "Adam learning rate of the MLP GAN's G and D", low=0, low_open=True)
    log_every: int = param(50, "log losses every N steps", low=1)
    train_subset: int = param(0, "train on the first N images (0 = all 60,000)", low=0)
    eval_samples: int = param(10000, "generated samples for FID, precision/recall and the class histogram", low=4)
    fid_real: int = param(10000, "real test images (and real train images for the floor) in FID", low=4, high=10000)
    grid_size: int = param(64, "samples in the fixed-noise grid saved every epoch", low=1, high=400)
    dev_fid_every: int = param(0, "log a development FID every N steps (0 = off): against fid_real real *training*"
                               " images, never the test images; for choosing a budget or a setting", low=0)
    dev_fid_samples: int = param(2000, "samples per development FID (compare FIDs only at one count)", low=2)
    data: str = param("", "a folder of your own images (unlabelled) instead of Fashion-MNIST; docs/gan.md")
    image_size: int = param(32, "--data images are centre-cropped and resized to this size", choices=image_sets.SIZES)
    channels: int = param(0, "--data as 1 (grey) or 3 (RGB) channels; 0: 1 if all are grey, else 3", choices=(0, 1, 3))
    test_fraction: float = param(0.2, "share of --data held out (seeded): FID's real side", low=0.01, high=0.5)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.models = [m for m in ARCHITECTURES if m in self.models]  # the DCGAN first, the MLP GAN in variants/mlp
        if self.train_subset and self.batch_size > self.train_subset:
            raise ConfigError(f"--batch_size {self.batch_size}: larger than --train_subset {self.train_subset}")


profiles = {
    "smoke": {"steps": 24, "batch_size": 32, "train_subset": 256, "log_every": 4, "eval_samples": 500,
              "fid_real": 500, "g_width": 4, "d_width": 4, "grid_size": 16, "mlp_steps": 24, "mlp_width": 8},
    "quick": {"steps": 500, "mlp_steps": 1950, "eval_samples": 5000, "fid_real": 5000},
    "full": {},
}

targets = [
    # DCGAN's FID at most half the MLP GAN's, trained on the same data for the same CPU time, per seed.
    Target("fid_ratio_to_mlp_gan", "<=", 0.5, when=ON_BUNDLED_DATA),
    Target("min_class_fraction", ">=", 0.05, when=ON_BUNDLED_DATA),  # every class at least 5% of the samples
    Target("kl_to_uniform", "<=", 0.05, when=ON_BUNDLED_DATA),  # class histogram close to uniform: no mode collapse
]

DATA_FIELDS = {"data": ()}  # the run records your folder's SHA-256 (data.json); eval, predict, resume check it
PREFIX = {"dcgan": "", "mlp": "mlp_"}  # of each GAN's metrics
bce = nn.functional.binary_cross_entropy_with_logits  # from logits: log-sigmoid never rounds to log 0


# ---- the technique: one D step, one G step -------------------------------------------------------
def d_step(trainer: Trainer, d: nn.Module, opt_d: torch.optim.Optimizer, scaler_d: torch.amp.GradScaler,
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


def g_step(trainer: Trainer, d: nn.Module, opt_g: torch.optim.Optimizer, scaler_g: torch.amp.GradScaler,
           fake: torch.Tensor, amp: str) -> torch.Tensor:
    """Update G, non-saturating: maximise log D(G(z)) (labels 1), not minimise log(1 - D(G(z))).

    The gradient flows back through D into G, but only G's optimizer steps; the gradients this leaves on D
    are cleared by D's next step."""
    with autocast(fake.device, amp):
        loss = bce(d(fake), torch.ones(len(fake), device=fake.device))
    trainer.backward(loss, opt_g, scaler_g, name="g_loss")
    return loss


def build_models(cfg: Config, device: torch.device, channels: int = 1,
                 arm: str = "dcgan") -> tuple[nn.Module, nn.Module]:
    """G and D from the seed: the DCGAN with its N(0, 0.02) initialisation, or the MLP GAN with PyTorch's default."""
    torch.manual_seed(cfg.seed)
    widths = (cfg.g_width, cfg.d_width) if arm == "dcgan" else (cfg.mlp_width, cfg.mlp_width)
    g, d = make_gan(arm, cfg.latent_dim, *widths, image_size(cfg), channels)
    # channels_last (NHWC) for the (transposed) convolutions: fewer layout reorders on CPU (docs/performance.md).
    return g.to(device, memory_format=torch.channels_last), d.to(device, memory_format=torch.channels_last)


# ---- train ---------------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    data, x_train = load_data(cfg)
    if len(x_train) < cfg.batch_size:
        raise ConfigError(f"--batch_size {cfg.batch_size}: larger than the {len(x_train)} training images")
    classifier, classifier_accuracy = (None, None) if cfg.data else instrument(run, data)
    dev_fid = development_fid(cfg, data, classifier) if cfg.dev_fid_every else None
    generators, cpu = {}, {}
    for arm in cfg.models:  # the DCGAN in the run itself, the MLP GAN in variants/mlp
        generators[arm], cpu[f"{arm}_train_cpu_s"] = train(cfg, run if arm == "dcgan" else run.variant(arm), arm,
                                                          x_train, dev_fid)
    plot_losses(run, cfg)
    if cfg.data:  # no labels: no classifier, no histogram
        return {**measure_own(cfg, generators, data, run.device), **{f"user_{k}": v for k, v in cpu.items()}}
    return {**measure(cfg, generators, classifier, data, run.device, run), **cpu,
            "classifier_test_accuracy": classifier_accuracy}


def train(cfg: Config, run: Run, arm: str, x_train: torch.Tensor,
          dev_fid: Callable[[torch.Tensor], float] | None) -> tuple[nn.Module, float]:
    """Train one GAN (the DCGAN in the run itself, the MLP GAN in its variant); returns G and the CPU seconds of
    its training steps (data, forward, backward, updates: not logging, grids or development FIDs)."""
    device = run.device
    g, d = build_models(cfg, device, x_train.shape[1], arm)
    lr_g, lr_d, steps = (cfg.lr_g, cfg.lr_d, cfg.steps) if arm == "dcgan" else (cfg.mlp_lr, cfg.mlp_lr, cfg.mlp_steps)
    # fused: one kernel for the whole update instead of several passes per parameter (same algorithm).
    opt_g = torch.optim.Adam(g.parameters(), lr=lr_g, betas=(cfg.beta1, 0.999), fused=True)
    opt_d = torch.optim.Adam(d.parameters(), lr=lr_d, betas=(cfg.beta1, 0.999), fused=True)
    scaler_g, scaler_d = grad_scaler(device, cfg.amp), grad_scaler(device, cfg.amp)
    trainer = Trainer(run, steps, every=cfg.log_every * (4 if arm == "dcgan" else 8), log_every=cfg.log_every,
                      description=f"gan {arm}", g=g, d=d, opt_g=opt_g, opt_d=opt_d, scaler_g=scaler_g,
                      scaler_d=scaler_d)
    fixed_z = torch.randn(cfg.grid_size, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed))
    steps_per_epoch = len(x_train) // cfg.batch_size
    cpu_s = trainer.extra.get("train_cpu_s", 0.0)  # earlier attempts' share (resume)

    g.train()
    d.train()
    for step, idx in trainer.steps(batches(len(x_train), cfg.batch_size, cfg.seed, trainer.start)):
        started = time.process_time()
        (real,) = take(idx, x_train, device=device)
        real = image_sets.unit(real) * 2 - 1 if real.dtype == torch.uint8 else real  # your images: bytes in memory
        z = torch.randn(len(idx), cfg.latent_dim, device=device)
        with autocast(device, cfg.amp):
            fake = g(z)
        d_loss, d_real, d_fake = d_step(trainer, d, opt_d, scaler_d, real, fake, cfg.amp)
        g_loss = g_step(trainer, d, opt_g, scaler_g, fake, cfg.amp)
        cpu_s += time.process_time() - started
        trainer.extra["train_cpu_s"] = cpu_s

        done = step + 1
        if done % cfg.log_every == 0 or done == steps:
            run.log({"train/d_loss": d_loss.item(), "train/g_loss": g_loss.item(),
                     "train/d_real": torch.sigmoid(d_real).mean().item(),
                     "train/d_fake": torch.sigmoid(d_fake).mean().item()}, done)
        if dev_fid and (done % cfg.dev_fid_every == 0 or done == steps):
            # Samples from a noise stream of their own and G in eval mode: training's RNG and BN are untouched.
            run.log({"eval/dev_fid": dev_fid(generate_samples(g, cfg.dev_fid_samples, cfg.seed + 2, device))}, done)
        if arm == "dcgan" and (done % steps_per_epoch == 0 or done == steps):
            save_grid(g, fixed_z, run.plot_path(f"samples_epoch{math.ceil(done / steps_per_epoch):02d}"), run)
    save_grid(g, fixed_z, run.plot_path("samples" if arm == "dcgan" else f"{arm}_samples"), run)
    if run.parent:
        run.finish({"train_cpu_s": cpu_s})
    return g, cpu_s


def check_launch(cfg: Config) -> None:
    if cfg.data:  # read and split your images before the run directory exists: bad data writes nothing
        read_images(cfg)


def read_images(cfg: Config) -> image_sets.ImageSet:
    return image_sets.read(cfg.data, cfg.image_size, cfg.channels, cfg.seed, cfg.test_fraction, cfg.batch_size)


def image_size(cfg: Config) -> int:
    return cfg.image_size if cfg.data else 28  # Fashion-MNIST is 28×28


def load_data(cfg: Config) -> tuple[fashion_mnist.FashionMNIST | image_sets.ImageSet, torch.Tensor]:
    """(data set, training images): Fashion-MNIST in [-1, 1], like tanh; your images as uint8 (scaled per batch)."""
    if cfg.data:
        images = read_images(cfg)
        return images, images.train[:cfg.train_subset or None]
    data = fashion_mnist.load()
    return data, fashion_mnist.as_float(data.train_images[:cfg.train_subset or None], normalize=False) * 2 - 1


def instrument(run: Run, data: fashion_mnist.FashionMNIST) -> tuple[FashionClassifier, float]:
    """The classifier that measures FID and coverage: the run's own copy if it has one, else the cached one."""
    return run_classifier(run.dir / "checkpoints" / "feature_classifier.pt", data, write=run.is_main)


# ---- evaluate ------------------------------------------------------------------------------------
def development_fid(cfg: Config, data: fashion_mnist.FashionMNIST | image_sets.ImageSet,
                    classifier: FashionClassifier | None) -> Callable[[torch.Tensor], float]:
    """samples → their FID against fid_real real *training* images, whose features are computed once."""
    if cfg.data:
        return lite0_fid_to(data.train[:cfg.fid_real])
    extractor, real = FeatureExtractor(classifier), real_train_images(cfg, data)
    return lambda fakes: fids(extractor, real, fakes)[0]


def real_train_images(cfg: Config, data: fashion_mnist.FashionMNIST) -> torch.Tensor:
    """fid_real training images in [0, 1], a seeded random pick: the floor's real side and the development FID's."""
    pick = torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(cfg.seed))
    return fashion_mnist.as_float(data.train_images[pick[:cfg.fid_real]], normalize=False)


@torch.no_grad()
def measure(cfg: Config, generators: dict[str, nn.Module], classifier: FashionClassifier,
            data: fashion_mnist.FashionMNIST, device: torch.device, run: Run | None = None) -> dict[str, float]:
    """Against the real test images: each GAN's FID, precision/recall (k = 3) and class histogram; the floor (real
    train vs real test), the calibration ladder (the floor's images degraded) and the DCGAN before training."""
    extractor = FeatureExtractor(classifier)
    real_test = fashion_mnist.as_float(data.test_images[:cfg.fid_real], normalize=False)
    real_train = real_train_images(cfg, data)
    ladder = calibration_ladder(real_train, cfg.seed + 3)
    with torch.random.fork_rng(devices=[]):  # rebuilding the initial G must not move the caller's RNG
        untrained = build_models(cfg, device)[0]
    fakes = {arm: generate_samples(g, cfg.eval_samples, cfg.seed + 1, device) for arm, g in generators.items()}
    floor, fid_untrained, *rest = fids(extractor, real_test, real_train,
                                       generate_samples(untrained, cfg.eval_samples, cfg.seed + 1, device),
                                       *(images for _, images in ladder.values()), *fakes.values())
    out = {"fid_floor": floor, "fid_untrained_generator": fid_untrained}
    out.update({f"fid_real_{name}": fid for name, fid in zip(ladder, rest)})
    real_features = torch.cat([extractor(real_test[i:i + 1000]) for i in range(0, len(real_test), 1000)])
    for (arm, images), fid in zip(fakes.items(), rest[len(ladder):]):
        prefix = PREFIX[arm]
        quality, frac = classifier_sample_quality(classifier, real_features, images, n_classes=10, k=3)
        out.update({f"{prefix}fid": fid, f"{prefix}fid_ratio": fid / floor,
                    **{f"{prefix}{name}": value for name, value in quality.items()}})
        if arm == "dcgan":
            out.update({f"class_fraction_{i}": frac[i].item() for i in range(10)})
    if {"fid", "mlp_fid"} <= out.keys():
        out["fid_ratio_to_mlp_gan"] = out["fid"] / out["mlp_fid"]
    if run is not None:
        plot_fid_ladder(run, real_train, ladder, fakes, out)
        if "dcgan" in fakes:
            plot_histogram(run, out)
    return out


@torch.no_grad()
def measure_own(cfg: Config, generators: dict[str, nn.Module], images: image_sets.ImageSet,
                device: torch.device) -> dict[str, float]:
    """Your images have no labels, so no classifier measures them: FID in EfficientNet-Lite0's ImageNet features
    against the held-out images (at most fid_real). The floor and each G (the same noise through each) use the same
    counts: as many training images as samples (eval_samples, at most all of them)."""
    n = min(cfg.eval_samples, len(images.train))
    with torch.random.fork_rng(devices=[]):  # rebuilding the initial G must not move the caller's RNG
        untrained = build_models(cfg, device, images.channels)[0]
    samples = [generate_batches(g, n, cfg.seed + 1, device) for g in (untrained, *generators.values())]
    floor, fid_untrained, *fid = lite0_fids(images.test[:cfg.fid_real], images.train[:n], *samples)
    # Named user_*, as textclass names them: the targets are claims about Fashion-MNIST.
    out = {"user_fid_floor": floor, "user_fid_untrained_generator": fid_untrained, "user_fid_generated_images": n,
           "user_fid_held_out_images": min(cfg.fid_real, len(images.test))}
    for arm, value in zip(generators, fid):
        out.update({f"user_{PREFIX[arm]}fid": value, f"user_{PREFIX[arm]}fid_ratio": value / floor})
    if {"user_fid", "user_mlp_fid"} <= out.keys():
        out["user_fid_ratio_to_mlp_gan"] = out["user_fid"] / out["user_mlp_fid"]
    return out


def load_generator(cfg: Config, run: Run, channels: int = 1, arm: str = "dcgan") -> nn.Module:
    g = build_models(cfg, run.device, channels, arm)[0]
    (run if arm == "dcgan" else run.variant(arm)).load(g, name="g")
    return g.eval()


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Every metric but the CPU times, again from the saved generators and the run's copy of the classifier."""
    data, x_train = load_data(cfg)
    generators = {arm: load_generator(cfg, run, x_train.shape[1], arm) for arm in cfg.models}
    if cfg.data:
        return measure_own(cfg, generators, data, run.device)
    classifier, _ = instrument(run, data)
    return measure(cfg, generators, classifier, data, run.device)


# ---- plots ---------------------------------------------------------------------------------------
def save_grid(g: nn.Module, z: torch.Tensor, path: Path, run: Run) -> None:
    if run.is_main:
        with eval_mode(g), torch.no_grad():
            image_sets.save_image_grid(((g(z.to(run.device)).float().cpu() + 1) / 2).clamp(0, 1), path)


def plot_losses(run: Run, cfg: Config) -> None:
    if not run.is_main:
        return
    dev_fid = {label: curve for arm, label in (("dcgan", "DCGAN"), ("mlp", "MLP GAN")) if arm in cfg.models
               and (curve := (run if arm == "dcgan" else run.variant(arm)).history("eval/dev_fid"))}
    fig, axes = plt.subplots(1, 3 if dev_fid else 2, figsize=(15 if dev_fid else 10, 4))
    panels = (((("train/d_loss", "D loss"), ("train/g_loss", "G loss (non-saturating)")), "loss", "DCGAN losses"),
              ((("train/d_real", "D(x), real"), ("train/d_fake", "D(G(z)), fake")), "mean probability",
               "DCGAN's discriminator outputs"))
    for ax, (curves, ylabel, title) in zip(axes, panels):
        for key, label in curves:
            if curve := run.history(key):
                ax.plot(*zip(*curve), label=label)
        ax.set(xlabel="step", ylabel=ylabel, title=title)
    for label, curve in dev_fid.items():
        axes[2].plot(*zip(*curve), marker="o", label=label)
    if dev_fid:
        axes[2].set(xlabel="step", ylabel="FID vs real training images", yscale="log", title="development FID")
    for ax in axes:
        if ax.lines:
            ax.legend()
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(run.plot_path("losses"), dpi=100)
    plt.close(fig)


def plot_fid_ladder(run: Run, real: torch.Tensor, ladder: dict[str, tuple[str, torch.Tensor]],
                    fakes: dict[str, torch.Tensor], metrics: dict[str, float]) -> None:
    """What an FID looks like: nine images of each set, real ones degraded step by step, then each GAN's samples."""
    if not run.is_main:
        return
    from torchvision.utils import make_grid

    panels = [("real (the floor)", real, metrics["fid_floor"])]
    panels += [(label, images, metrics[f"fid_real_{name}"]) for name, (label, images) in ladder.items()]
    panels += [(label, fakes[arm], metrics[name]) for arm, label, name in (("mlp", "MLP GAN", "mlp_fid"),
                                                                           ("dcgan", "DCGAN", "fid")) if arm in fakes]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.9 * len(panels), 2.4))
    for ax, (title, images, fid) in zip(axes, panels):
        ax.imshow(make_grid(images[:9], nrow=3, padding=1, pad_value=1.0)[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{title}\nFID {fid:.3g}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(run.plot_path("fid_ladder"), dpi=120)
    plt.close(fig)


def plot_histogram(run: Run, metrics: dict[str, float]) -> None:
    if not run.is_main:
        return
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.bar(range(10), [metrics[f"class_fraction_{i}"] for i in range(10)], color="tab:blue")
    ax.axhline(0.1, color="grey", linewidth=0.8, label="uniform")
    ax.axhline(0.05, color="tab:red", linewidth=0.8, linestyle="--", label="target minimum 5%")
    ax.set_xticks(range(10), fashion_mnist.CLASSES, rotation=30, ha="right")
    ax.set(ylabel="fraction of samples", title=f"DCGAN samples' classes (KL to uniform {metrics['kl_to_uniform']:.3f})")
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
    image_sets.save_image_grid(generate_samples(g, args.n, args.sample_seed, run.device), out)
    print(f"wrote {args.n} samples to {out}")
    return out

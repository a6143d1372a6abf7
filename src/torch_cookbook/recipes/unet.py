"""UNet semantic segmentation: Fashion-MNIST items on real photo textures, 11 classes, cross-entropy + Dice.

Seed Q66 describes UNet in words only. This recipe trains one: an encoder-decoder with skip connections
(`torch_cookbook.nn.unet.UNet`, depth and width configurable) on a composed but realistic segmentation set
with exact masks (`data/segmentation.py`), and reports per-class IoU, mean IoU and foreground Dice on
held-out images, beside a classical baseline: Otsu's threshold (scikit-image) for foreground vs background.
`--data DIR` trains on your own images/ and masks/ instead (`data/segmentation_folder.py`): resized to a short
side of --image_size, random square crops in training, whole images scored one at a time.

Docs: docs/unet.md
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch
from torch import nn

from torch_cookbook.data import images, segmentation
from torch_cookbook.data.segmentation_folder import MaskedImages, read_folder, to_scale
from torch_cookbook.engine.config import ON_BUNDLED_DATA, BaseConfig, Target, param
from torch_cookbook.engine.loop import autocast, batches, grad_scaler, predict_batches, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import CheckpointError, ConfigError
from torch_cookbook.nn.unet import UNet, confusion_matrix, dice_loss, otsu_confusion, overlap_scores

seed_question = "Q66 UNet"
summary = "UNet segmentation of Fashion-MNIST items on photo textures (11 classes), CE + Dice, vs Otsu threshold."

CLASSES = segmentation.CLASSES
NUM_CLASSES = len(CLASSES)


@dataclass
class Config(BaseConfig):
    steps: int = param(6000, "training steps", low=1)
    batch_size: int = param(16, "minibatch size", low=2)
    lr: float = param(1e-2, "AdamW peak learning rate (cosine decay to 0)", low=0, low_open=True)
    weight_decay: float = param(1e-4, "AdamW weight decay", low=0)
    width: int = param(24, "channels of the first UNet level (doubling per level)", low=1)
    depth: int = param(3, "number of down/up levels", low=1, high=6)
    dice_weight: float = param(1.0, "loss = cross-entropy + dice_weight × Dice loss", low=0)
    class_weight_power: float = param(0.5, "cross-entropy weight of class c ∝ (its training pixel share)^-power; "
                                           "0 = unweighted", low=0, high=1)
    image_size: int = param(48, "side of the composed images; with --data, the short side every image is resized "
                                "to (training crops are image_size × image_size)", low=16)
    n_train: int = param(6000, "composed training images", low=8)
    n_test: int = param(1000, "composed held-out images", low=8)
    max_items: int = param(3, "at most this many Fashion-MNIST items per image (1..max, may overlap)", low=1)
    eval_every: int = param(250, "log held-out mean IoU every N steps (and checkpoint)", low=1)
    eval_subset: int = param(256, "held-out images used for the curve during training (the final eval uses all)",
                             low=1)
    n_val: int = param(500, "validation scenes, composed like the training set with another seed, scored at the "
                            "end (with and without --flip_tta): settings are chosen on these; 0 = none", low=0)
    flip_tta: bool = param(True, "predict with the mean of the logits of the image and of its mirror image")
    data: str = param("", "your own data instead of the composed scenes: a folder with images/ and masks/ (same file "
                          "stems; masks are single-channel PNGs of class indices 0..K-1)")
    val_fraction: float = param(0.1, "--data: share of the pairs held out for validation (choices)", low=0, high=1)
    test_fraction: float = param(0.2, "--data: share of the pairs held out for the test (reported)", low=0, high=1)


profiles = {
    "smoke": {"steps": 12, "batch_size": 8, "width": 4, "depth": 2, "n_train": 64, "n_test": 32, "n_val": 16,
              "image_size": 32, "eval_every": 4, "eval_subset": 16},
    "quick": {"steps": 300, "eval_every": 100, "n_train": 2000, "n_test": 500, "width": 16},
    "full": {},
}

targets = [
    Target("fg_dice", ">=", 0.90, when=ON_BUNDLED_DATA),  # foreground vs background Dice (Otsu is reported beside it)
    Target("mean_iou", ">=", 0.60, when=ON_BUNDLED_DATA),  # mean IoU over the 11 classes
]
DATA_FIELDS = {"data": ()}  # the run records your folder (data.json); eval, predict and resume refuse it changed
CLASSES_FILE = "classes.json"  # with --data: the class names, so predict needs the run only


# ---- the technique: cross-entropy + Dice ----------------------------------------------------------
def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, ce_weight: torch.Tensor,
                      dice_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, cross-entropy): class-weighted cross-entropy per pixel + dice_weight × soft Dice loss.

    Cross-entropy is dominated by the background pixels; Dice scores each class by its own overlap, so small
    items count as much as large ones (`nn.unet.dice_loss`, from softmax probabilities in float32).
    """
    ce = nn.functional.cross_entropy(logits, masks, weight=ce_weight)
    return ce + dice_weight * dice_loss(logits, masks), ce


def class_weights(pixel_counts: torch.Tensor, power: float) -> torch.Tensor:
    """Cross-entropy weights share^-power from the training pixels per class, scaled so that the average pixel's
    weight is 1.

    Background is most of the pixels, so plain cross-entropy spends most of its gradient on it; power 0.5 moves
    part of that to the item classes, whose confusions (shirt vs T-shirt vs coat) are what mean IoU measures.
    """
    share = pixel_counts.double() / pixel_counts.sum()
    weight = share.clamp_min(1e-6).pow(-power)
    return (weight / (weight * share).sum()).float()


def make_model(cfg: Config, num_classes: int) -> UNet:
    # channels_last (NHWC) lets oneDNN run these small convolutions without layout reorders; the numbers
    # computed are the same, only the memory layout differs.
    model = UNet(in_channels=3, num_classes=num_classes, width=cfg.width, depth=cfg.depth)
    return model.to(memory_format=torch.channels_last)


# ---- train ---------------------------------------------------------------------------------------
Split = segmentation.SegmentationSet | MaskedImages


@dataclass
class Data:
    """What a run trains and scores on: the composed scenes (stacked tensors) or your folder (resized pairs)."""

    train: Split
    val: Split | None
    test: Split
    classes: tuple[str, ...]


def run(cfg: Config, run: Run) -> dict[str, float | None]:
    data = load_data(cfg)
    if cfg.data and run.is_main:
        (run.dir / CLASSES_FILE).write_text(json.dumps(data.classes) + "\n")
    torch.manual_seed(cfg.seed)
    model = make_model(cfg, len(data.classes)).to(run.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.steps,
                                                    pct_start=0.1)  # short warm-up, then cosine decay
    trainer = Trainer(run, cfg.steps, every=cfg.eval_every, model=model, optimizer=optimizer, scheduler=scheduler,
                      scaler=grad_scaler(run.device, cfg.amp))
    # The curve during training: the first held-out scenes, or with --data the validation pairs (test is scored once).
    curve = (data.val if cfg.data else data.test).head(cfg.eval_subset)
    ce_weight = class_weights(data.train.pixel_counts(len(data.classes)), cfg.class_weight_power).to(run.device)

    model.train()
    for step, idx in trainer.steps(batches(len(data.train), cfg.batch_size, cfg.seed, trainer.start)):
        x, y = training_batch(cfg, data.train, idx, step, run.device)
        if step % 2:  # a horizontal flip every other batch: free augmentation, a function of step only
            x, y = x.flip(-1), y.flip(-1)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(run.device, cfg.amp):
            loss, ce = segmentation_loss(model(x), y, ce_weight, cfg.dice_weight)
        trainer.backward(loss)
        scheduler.step()
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            m = scores(cfg, model, curve, data.classes, run.device)
            run.log({"train/loss": loss.item(), "train/cross_entropy": ce.item(),
                     "eval/mean_iou": m["mean_iou"], "eval/fg_dice": m["fg_dice"]}, done)

    metrics = held_out_metrics(cfg, model, data, run.device)
    if run.is_main:
        plot_curves(cfg, run)
        plot_examples(cfg, model, data, run)
    return metrics


def training_batch(cfg: Config, train: Split, idx: torch.Tensor, step: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(train, MaskedImages):  # a random square of each pair, placed by (seed, step): resume is exact
        x, y = train.crops(idx.tolist(), cfg.image_size, np.random.default_rng([cfg.seed, step]))
        return x.to(device), y.to(device)
    return take(idx, train.images, train.masks, device=device)


def load_data(cfg: Config) -> Data:
    if cfg.data:
        folder = read_folder(cfg.data, cfg.image_size, cfg.seed, cfg.val_fraction, cfg.test_fraction)
        return Data(folder.part("train"), folder.part("val"), folder.part("test"), folder.classes)
    train, test = segmentation.load(cfg.n_train, cfg.n_test, cfg.image_size, cfg.max_items)
    val = segmentation.load_validation(cfg.n_val, cfg.image_size, cfg.max_items) if cfg.n_val else None
    return Data(train, val, test, CLASSES)


def check_launch(cfg: Config) -> None:
    """With --data: read, check and split your folder before the run directory exists, so bad data writes nothing."""
    if not cfg.data:
        return
    if cfg.image_size < 2 ** cfg.depth:
        raise ConfigError(f"--image_size {cfg.image_size}: smaller than 2**depth = {2 ** cfg.depth}, the smallest "
                          f"input of a depth-{cfg.depth} UNet")
    n_train = len(load_data(cfg).train)
    if cfg.batch_size > n_train:
        raise ConfigError(f"--batch_size {cfg.batch_size}: larger than the {n_train} training pairs of {cfg.data}")


# ---- evaluate -------------------------------------------------------------------------------------
def slug(name: str) -> str:
    return name.lower().replace("/", "_").replace("-", "_").replace(" ", "_")


def segmentation_metrics(pred: torch.Tensor, truth: torch.Tensor,
                         classes: tuple[str, ...] = CLASSES) -> dict[str, float]:
    """Per-class IoU, mean IoU (over all classes), pixel accuracy and foreground/background Dice."""
    from torchmetrics.functional.classification import binary_f1_score, multiclass_jaccard_index

    iou = multiclass_jaccard_index(pred, truth, num_classes=len(classes), average=None)
    out = {"mean_iou": iou.mean().item(), "pixel_accuracy": (pred == truth).float().mean().item(),
           # Dice of a binary mask is its F1 score: 2TP / (2TP + FP + FN)
           "fg_dice": binary_f1_score((pred > 0).long(), (truth > 0).long()).item()}
    out.update({f"iou_{slug(c)}": v.item() for c, v in zip(classes, iou)})
    return out


def confusion_metrics(confusion: torch.Tensor, classes: tuple[str, ...]) -> dict[str, float | None]:
    """The metrics of `segmentation_metrics` from a confusion matrix summed image by image (`nn.unet`); a class
    neither true nor predicted has no IoU (None) and is left out of the mean."""
    scores = overlap_scores(confusion)
    iou = scores.pop("iou")
    return {**scores, **{f"iou_{slug(c)}": None if v.isnan() else v.item() for c, v in zip(classes, iou)}}


def scores(cfg: Config, model: nn.Module, split: Split, classes: tuple[str, ...], device: torch.device,
           flip: bool = False) -> dict[str, float | None]:
    if isinstance(split, segmentation.SegmentationSet):
        return segmentation_metrics(predict_masks(model, split.images, device, cfg.amp, flip), split.masks, classes)
    confusion = sum(confusion_matrix(predict_masks(model, image[None], device, cfg.amp, flip)[0], mask, len(classes))
                    for image, mask in split.pairs())  # one pair at a time: their sizes differ
    return confusion_metrics(confusion, classes)


def held_out_metrics(cfg: Config, model: nn.Module, data: Data, device: torch.device) -> dict[str, float | None]:
    """Test metrics and baselines, then validation mean IoU and fg Dice without and with flip averaging (`val_*`,
    `val_*_flip`): settings are chosen on those."""
    metrics = scores(cfg, model, data.test, data.classes, device, cfg.flip_tta)
    metrics.update(baselines(cfg, data))
    for flip in (False, True) if data.val is not None else ():
        m = scores(cfg, model, data.val, data.classes, device, flip)
        suffix = "_flip" if flip else ""
        metrics.update({f"val_mean_iou{suffix}": m["mean_iou"], f"val_fg_dice{suffix}": m["fg_dice"]})
    return metrics


def baselines(cfg: Config, data: Data) -> dict[str, float | None]:
    """Otsu's threshold (composed scenes, or your data with two classes), and with --data the majority class: every
    pixel called the class most common in training, the score of a model that learned nothing."""
    out = {}
    if not cfg.data or len(data.classes) == 2:
        otsu = overlap_scores(otsu_confusion(data.test.pairs()))
        out.update({"otsu_fg_dice": otsu["fg_dice"], **({"otsu_mean_iou": otsu["mean_iou"]} if cfg.data else {})})
    if cfg.data:
        k = len(data.classes)
        confusion = torch.zeros(k, k, dtype=torch.int64)
        confusion[:, int(data.train.pixel_counts(k).argmax())] = data.test.pixel_counts(k)
        out["majority_mean_iou"] = confusion_metrics(confusion, data.classes)["mean_iou"]
    return out


def predict_logits(model: nn.Module, x: torch.Tensor, device: torch.device, amp: str = "off",
                   flip: bool = False) -> torch.Tensor:
    """Per-pixel class logits; with `flip`, the mean of those of x and of its mirror image (mirrored back).

    Training saw mirrored scenes half of the time, so both views are in-distribution and their errors differ.
    """
    logits = predict_batches(model, x, device, batch_size=128, amp=amp)
    if flip:
        logits = (logits + predict_batches(model, x.flip(-1), device, batch_size=128, amp=amp).flip(-1)) / 2
    return logits


def predict_masks(model: nn.Module, x: torch.Tensor, device: torch.device, amp: str = "off",
                  flip: bool = False) -> torch.Tensor:
    return predict_logits(model, x, device, amp, flip).argmax(1)


def run_classes(cfg: Config, run: Run) -> tuple[str, ...]:
    path = run.dir / CLASSES_FILE
    if cfg.data and not path.is_file():
        raise CheckpointError(f"{path}: missing; a run on --data writes it before it trains")
    return tuple(json.loads(path.read_text())) if cfg.data else CLASSES


def load_model(cfg: Config, run: Run, num_classes: int) -> UNet:
    model = make_model(cfg, num_classes).to(run.device)
    run.load(model)
    return model.eval()


def evaluate(cfg: Config, run: Run) -> dict[str, float | None]:
    """Held-out metrics recomputed from the saved checkpoint."""
    data = load_data(cfg)
    model = load_model(cfg, run, len(run_classes(cfg, run)))
    return held_out_metrics(cfg, model, data, run.device)


# ---- plots ---------------------------------------------------------------------------------------
def class_colours(num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Background black, then matplotlib's tab10 (tab20 past 11 classes, repeating after 21)."""
    cmap = plt.get_cmap("tab10" if num_classes <= 11 else "tab20")
    return np.vstack([[0, 0, 0], cmap(np.arange(num_classes - 1) % cmap.N)[:, :3]])


def plot_curves(cfg: Config, run: Run) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("eval/mean_iou", "eval/fg_dice"):
        curve = run.history(key)
        if curve:
            steps, values = zip(*curve)
            ax.plot(steps, values, marker=".", label=key.split("/")[1])
    for t in targets:
        ax.axhline(t.value, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xlabel="training step", ylabel=f"{'validation' if cfg.data else 'held-out'} (first {cfg.eval_subset} "
                                          f"images)", ylim=(0, 1),
           title=f"UNet depth {cfg.depth}, width {cfg.width}, batch {cfg.batch_size}: "
                 f"CE (weights share^-{cfg.class_weight_power:g}) + {cfg.dice_weight:g}×Dice")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("learning_curves"), dpi=100)
    plt.close(fig)


def plot_examples(cfg: Config, model: nn.Module, data: Data, run: Run, n: int = 6) -> None:
    """Rows: test images; columns: input, truth, UNet prediction."""
    shown = list(itertools.islice(data.test.pairs(), n))
    colours = class_colours(len(data.classes))
    fig, axes = plt.subplots(len(shown), 3, figsize=(6, 2 * len(shown)), squeeze=False)
    for i, (image, mask) in enumerate(shown):
        pred = predict_masks(model, image[None], run.device, flip=cfg.flip_tta)[0]
        for ax, panel, title in zip(axes[i], (image.permute(1, 2, 0).numpy(), colours[mask.numpy()],
                                              colours[pred.numpy()]), ("input", "truth", "UNet")):
            ax.imshow(panel, interpolation="nearest")
            ax.set_title(title if i == 0 else "", fontsize=9)
            ax.axis("off")
    handles = [Patch(color=colours[k], label=c) for k, c in enumerate(data.classes)]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(run.plot_path("examples"), dpi=90)
    plt.close(fig)


# ---- predict: segment the user's image --------------------------------------------------------------
def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="an image file (PNG, JPEG, ...) or a bundled name such as coffee")
    parser.add_argument("--resize", type=int, default=0,
                        help="centre-crop and resize to N×N first (0 = as is; the model saw 48×48 scenes by default)")
    parser.add_argument("--out", default=None, help="input and overlay, a PNG [default <image name>_segmentation.png]")
    parser.add_argument("--scale", type=float, default=0, help="a run on --data: resize the image by this factor "
                        "(1 = as is) instead of to a short side of --image_size, e.g. a whole image after tiles")
    parser.add_argument("--mask", default=None,
                        help="the predicted mask: a PNG of class indices at the image's size [default <name>_mask.png]")


def segment(cfg: Config, model: UNet, image: torch.Tensor, device: torch.device, scale: float = 0) -> torch.Tensor:
    """Classes (H, W) of one float image (3, H, W). With --data the model learned at a short side of --image_size:
    the image is resized to that short side as in training (or by `scale`, to 2**depth at least), and the
    logits back to (H, W)."""
    if not cfg.data:
        images.check_size(image, model.min_size, "the image")
        return predict_masks(model, image[None], device, flip=cfg.flip_tta)[0]
    short_side = max(round(min(image.shape[-2:]) * scale), model.min_size) if scale else cfg.image_size
    logits = predict_logits(model, to_scale(image, short_side)[None], device, flip=cfg.flip_tta)
    return nn.functional.interpolate(logits, size=image.shape[-2:], mode="bilinear").argmax(1)[0]


def predict(cfg: Config, run: Run, args: argparse.Namespace) -> None:
    from PIL import Image

    if args.resize < 0 or args.scale < 0:
        raise ConfigError(f"--resize {args.resize} --scale {args.scale:g}: must be 0 (off) or positive")
    image = images.load_image(args.image)
    if args.resize:
        image = images.square(image, args.resize)
    classes = run_classes(cfg, run)
    mask = segment(cfg, load_model(cfg, run, len(classes)), image, run.device, args.scale)
    stem = Path(str(args.image)).stem
    out, mask_out = Path(args.out or f"{stem}_segmentation.png"), Path(args.mask or f"{stem}_mask.png")
    colours = class_colours(len(classes))
    picture = image.permute(1, 2, 0).numpy()
    overlay = np.where(mask.numpy()[..., None] > 0, 0.4 * picture + 0.6 * colours[mask.numpy()], picture)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    for ax, panel, title in zip(axes, (picture, overlay), ("input", "UNet segmentation")):
        ax.imshow(panel, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    counts = torch.bincount(mask.flatten(), minlength=len(classes)).float() / mask.numel()
    handles = [Patch(color=colours[k], label=f"{c} {100 * counts[k]:.0f}%")
               for k, c in enumerate(classes) if counts[k] > 0]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    mask_out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    Image.fromarray(mask.numpy().astype(np.uint8)).save(mask_out)
    shares = ", ".join(f"{c} {100 * counts[k]:.1f}%" for k, c in enumerate(classes) if counts[k] > 0)
    print(f"wrote {out} and {mask_out}: {shares}")

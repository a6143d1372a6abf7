"""UNet semantic segmentation: Fashion-MNIST items on real photo textures, 11 classes, cross-entropy + Dice.

Seed Q66 describes UNet in words only. This recipe trains one: an encoder-decoder with skip connections
(`torch_cookbook.nn.unet.UNet`, depth and width configurable) on a composed but realistic segmentation set
with exact masks (`data/segmentation.py`), and reports per-class IoU, mean IoU and foreground Dice on
held-out images, beside a classical baseline: Otsu's threshold (scikit-image) for foreground vs background.

Docs: docs/unet.md
"""

from __future__ import annotations

import argparse
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
from torch_cookbook.engine.config import BaseConfig, Target, param
from torch_cookbook.engine.loop import autocast, batches, grad_scaler, predict_batches, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.nn.unet import UNet, dice_loss

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
    image_size: int = param(48, "side of the composed images", low=16)
    n_train: int = param(6000, "composed training images", low=8)
    n_test: int = param(1000, "composed held-out images", low=8)
    max_items: int = param(3, "at most this many Fashion-MNIST items per image (1..max, may overlap)", low=1)
    eval_every: int = param(250, "log held-out mean IoU every N steps (and checkpoint)", low=1)
    eval_subset: int = param(256, "held-out images used for the curve during training (the final eval uses all)",
                             low=1)
    n_val: int = param(500, "validation scenes, composed like the training set with another seed, scored at the "
                            "end (with and without --flip_tta): settings are chosen on these; 0 = none", low=0)
    flip_tta: bool = param(True, "predict with the mean of the logits of the image and of its mirror image")


profiles = {
    "smoke": {"steps": 12, "batch_size": 8, "width": 4, "depth": 2, "n_train": 64, "n_test": 32, "n_val": 16,
              "image_size": 32, "eval_every": 4, "eval_subset": 16},
    "quick": {"steps": 300, "eval_every": 100, "n_train": 2000, "n_test": 500, "width": 16},
    "full": {},
}

targets = [
    Target("fg_dice", ">=", 0.90),  # foreground vs background Dice (Otsu is reported beside it)
    Target("mean_iou", ">=", 0.60),  # mean IoU over the 11 classes
]


# ---- the technique: cross-entropy + Dice ----------------------------------------------------------
def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, ce_weight: torch.Tensor,
                      dice_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, cross-entropy): class-weighted cross-entropy per pixel + dice_weight × soft Dice loss.

    Cross-entropy is dominated by the background pixels; Dice scores each class by its own overlap, so small
    items count as much as large ones (`nn.unet.dice_loss`, from softmax probabilities in float32).
    """
    ce = nn.functional.cross_entropy(logits, masks, weight=ce_weight)
    return ce + dice_weight * dice_loss(logits, masks), ce


def class_weights(masks: torch.Tensor, power: float) -> torch.Tensor:
    """Cross-entropy weights share^-power, scaled so that the average pixel's weight is 1.

    Background is most of the pixels, so plain cross-entropy spends most of its gradient on it; power 0.5 moves
    part of that to the item classes, whose confusions (shirt vs T-shirt vs coat) are what mean IoU measures.
    """
    share = torch.bincount(masks.flatten(), minlength=NUM_CLASSES).double() / masks.numel()
    weight = share.clamp_min(1e-6).pow(-power)
    return (weight / (weight * share).sum()).float()


def make_model(cfg: Config) -> UNet:
    # channels_last (NHWC) lets oneDNN run these small convolutions without layout reorders; the numbers
    # computed are the same, only the memory layout differs.
    model = UNet(in_channels=3, num_classes=NUM_CLASSES, width=cfg.width, depth=cfg.depth)
    return model.to(memory_format=torch.channels_last)


# ---- train ---------------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    train, test = load_data(cfg)
    torch.manual_seed(cfg.seed)
    model = make_model(cfg).to(run.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.steps,
                                                    pct_start=0.1)  # short warm-up, then cosine decay
    trainer = Trainer(run, cfg.steps, every=cfg.eval_every, model=model, optimizer=optimizer, scheduler=scheduler,
                      scaler=grad_scaler(run.device, cfg.amp))
    x_eval, y_eval = test.images[:cfg.eval_subset], test.masks[:cfg.eval_subset]
    ce_weight = class_weights(train.masks, cfg.class_weight_power).to(run.device)

    model.train()
    for step, idx in trainer.steps(batches(len(train.images), cfg.batch_size, cfg.seed, trainer.start)):
        x, y = take(idx, train.images, train.masks, device=run.device)
        if step % 2:  # a horizontal flip every other batch: free augmentation, a function of step only
            x, y = x.flip(-1), y.flip(-1)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(run.device, cfg.amp):
            loss, ce = segmentation_loss(model(x), y, ce_weight, cfg.dice_weight)
        trainer.backward(loss)
        scheduler.step()
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            m = segmentation_metrics(predict_masks(model, x_eval, run.device, cfg.amp), y_eval)
            run.log({"train/loss": loss.item(), "train/cross_entropy": ce.item(),
                     "eval/mean_iou": m["mean_iou"], "eval/fg_dice": m["fg_dice"]}, done)

    metrics = segmentation_metrics(predict_masks(model, test.images, run.device, cfg.amp, cfg.flip_tta), test.masks)
    metrics["otsu_fg_dice"] = otsu_fg_dice(test.images, test.masks)
    metrics.update(validation_metrics(cfg, model, run.device))  # what settings are chosen on
    if run.is_main:
        plot_curves(cfg, run)
        plot_examples(cfg, model, test, run)
    return metrics


def load_data(cfg: Config) -> tuple[segmentation.SegmentationSet, segmentation.SegmentationSet]:
    return segmentation.load(cfg.n_train, cfg.n_test, cfg.image_size, cfg.max_items)


# ---- evaluate -------------------------------------------------------------------------------------
def slug(name: str) -> str:
    return name.lower().replace("/", "_").replace("-", "_").replace(" ", "_")


def segmentation_metrics(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Per-class IoU, mean IoU (11 classes), pixel accuracy and foreground/background Dice."""
    from torchmetrics.functional.classification import binary_f1_score, multiclass_jaccard_index

    iou = multiclass_jaccard_index(pred, truth, num_classes=NUM_CLASSES, average=None)
    out = {"mean_iou": iou.mean().item(), "pixel_accuracy": (pred == truth).float().mean().item(),
           # Dice of a binary mask is its F1 score: 2TP / (2TP + FP + FN)
           "fg_dice": binary_f1_score((pred > 0).long(), (truth > 0).long()).item()}
    out.update({f"iou_{slug(c)}": v.item() for c, v in zip(CLASSES, iou)})
    return out


def otsu_fg_dice(imgs: torch.Tensor, truth: torch.Tensor) -> float:
    """Foreground Dice of Otsu's threshold on the grey image. Per image, the polarity (items brighter or darker
    than the threshold) that matches the truth better is used: an oracle choice that flatters the baseline."""
    from skimage.filters import threshold_otsu

    tp = fp = fn = 0
    for img, mask in zip(imgs, truth):
        grey = img.mean(0).numpy()
        fg_true = mask.numpy() > 0
        above = grey > threshold_otsu(grey)
        best = None
        for fg in (above, ~above):
            counts = ((fg & fg_true).sum(), (fg & ~fg_true).sum(), (~fg & fg_true).sum())
            dice = 2 * counts[0] / max(2 * counts[0] + counts[1] + counts[2], 1)
            if best is None or dice > best[0]:
                best = (dice, counts)
        tp, fp, fn = tp + best[1][0], fp + best[1][1], fn + best[1][2]
    return float(2 * tp / (2 * tp + fp + fn))


def predict_masks(model: nn.Module, x: torch.Tensor, device: torch.device, amp: str = "off",
                  flip: bool = False) -> torch.Tensor:
    """Per-pixel classes; with `flip`, from the mean logits of x and of its mirror image (mirrored back).

    Training saw mirrored scenes half of the time, so both views are in-distribution and their errors differ.
    """
    logits = predict_batches(model, x, device, batch_size=128, amp=amp)
    if flip:
        logits = (logits + predict_batches(model, x.flip(-1), device, batch_size=128, amp=amp).flip(-1)) / 2
    return logits.argmax(1)


def validation_metrics(cfg: Config, model: nn.Module, device: torch.device) -> dict[str, float]:
    """Mean IoU and fg Dice on the validation scenes, without and with flip averaging (`val_*`, `val_*_flip`)."""
    if not cfg.n_val:
        return {}
    val = segmentation.load_validation(cfg.n_val, cfg.image_size, cfg.max_items)
    out = {}
    for flip in (False, True):
        m = segmentation_metrics(predict_masks(model, val.images, device, cfg.amp, flip), val.masks)
        suffix = "_flip" if flip else ""
        out.update({f"val_mean_iou{suffix}": m["mean_iou"], f"val_fg_dice{suffix}": m["fg_dice"]})
    return out


def load_model(cfg: Config, run: Run) -> UNet:
    model = make_model(cfg).to(run.device)
    run.load(model)
    return model.eval()


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Held-out metrics recomputed from the saved checkpoint."""
    _, test = load_data(cfg)
    model = load_model(cfg, run)
    metrics = segmentation_metrics(predict_masks(model, test.images, run.device, cfg.amp, cfg.flip_tta), test.masks)
    metrics["otsu_fg_dice"] = otsu_fg_dice(test.images, test.masks)
    metrics.update(validation_metrics(cfg, model, run.device))
    return metrics


# ---- plots ---------------------------------------------------------------------------------------
def class_colours() -> np.ndarray:
    """Background black, then 10 distinct colours (matplotlib's tab10)."""
    return np.vstack([[0, 0, 0], plt.get_cmap("tab10")(np.arange(10))[:, :3]])


def plot_curves(cfg: Config, run: Run) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("eval/mean_iou", "eval/fg_dice"):
        curve = run.history(key)
        if curve:
            steps, values = zip(*curve)
            ax.plot(steps, values, marker=".", label=key.split("/")[1])
    for t in targets:
        ax.axhline(t.value, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xlabel="training step", ylabel=f"held-out (first {cfg.eval_subset} images)", ylim=(0, 1),
           title=f"UNet depth {cfg.depth}, width {cfg.width}, batch {cfg.batch_size}: "
                 f"CE (weights share^-{cfg.class_weight_power:g}) + {cfg.dice_weight:g}×Dice")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("learning_curves"), dpi=100)
    plt.close(fig)


def plot_examples(cfg: Config, model: nn.Module, test: segmentation.SegmentationSet, run: Run, n: int = 6) -> None:
    """Rows: held-out images; columns: input, truth, UNet prediction."""
    n = min(n, len(test.images))
    pred = predict_masks(model, test.images[:n], run.device, flip=cfg.flip_tta)
    colours = class_colours()
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        panels = (test.images[i].permute(1, 2, 0).numpy(), colours[test.masks[i].numpy()], colours[pred[i].numpy()])
        for ax, panel, title in zip(axes[i], panels, ("input", "truth", "UNet")):
            ax.imshow(panel, interpolation="nearest")
            ax.set_title(title if i == 0 else "", fontsize=9)
            ax.axis("off")
    handles = [Patch(color=colours[k], label=c) for k, c in enumerate(CLASSES)]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(run.plot_path("examples"), dpi=90)
    plt.close(fig)


# ---- predict: segment the user's image --------------------------------------------------------------
def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="an image file (PNG, JPEG, ...) or a bundled name such as coffee")
    parser.add_argument("--resize", type=int, default=0,
                        help="centre-crop and resize to N×N first (0 = as is; the model saw 48×48 scenes by default)")
    parser.add_argument("--out", default=None, help="output PNG [default <image name>_segmentation.png]")


def predict(cfg: Config, run: Run, args: argparse.Namespace) -> None:
    from torch_cookbook.errors import ConfigError

    if args.resize < 0:
        raise ConfigError(f"--resize {args.resize}: must be 0 (keep the size) or a positive size")
    image = images.load_image(args.image)
    if args.resize:
        image = images.square(image, args.resize)
    model = load_model(cfg, run)
    images.check_size(image, model.min_size, f"image {args.image}")
    mask = predict_masks(model, image.unsqueeze(0), run.device, flip=cfg.flip_tta)[0]
    out = Path(args.out or f"{Path(str(args.image)).stem}_segmentation.png")
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    axes[0].imshow(image.permute(1, 2, 0).numpy())
    axes[1].imshow(class_colours()[mask.numpy()], interpolation="nearest")
    for ax, title in zip(axes, ("input", "UNet segmentation")):
        ax.set_title(title)
        ax.axis("off")
    counts = torch.bincount(mask.flatten(), minlength=NUM_CLASSES).float() / mask.numel()
    handles = [Patch(color=class_colours()[k], label=f"{c} {100 * counts[k]:.0f}%")
               for k, c in enumerate(CLASSES) if counts[k] > 0]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    shares = ", ".join(f"{c} {100 * counts[k]:.1f}%" for k, c in enumerate(CLASSES) if counts[k] > 0)
    print(f"wrote {out}: {shares}")

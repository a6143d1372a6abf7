"""LSTM variants compared on one text task and one forecasting task: direction, depth, attention pooling.

Seeds Q33 and Q62 name the LSTM's variants (bidirectional, multi-layer, attention) without measuring them, and
Q62's model takes `out[:, -1, :]` as the sequence summary. Every variant here trains on the same data with the
same budget, and the recipe reports metric, parameter count and training time: BBC News topics (packed
variable-length sequences, macro-F1) and 12-month-ahead CO2 (rolling origin, MAE). `bi_padded_last` trains
the seed's `out[:, -1, :]` on a padded batch to measure its bug: that position comes after the padding, where
the backward direction has read one (padding) step. Beside the variants, textclass's packed BiLSTM trained with
textclass's settings on the same tokens and split is the absolute bar. The models are in nn/lstm.py.
Docs: docs/lstm.md
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from torch_cookbook.data import series as S
from torch_cookbook.data import text as textdata
from torch_cookbook.engine.config import BaseConfig, Target, param
from torch_cookbook.engine.loop import autocast, batches, grad_scaler, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.nn.forecasting import rolling_forecast, training_pairs
from torch_cookbook.nn.lstm import LSTMClassifier, LSTMForecaster
from torch_cookbook.nn.text import classification_metrics, predict_logits

seed_question = "Q33/Q62 LSTM"
summary = "LSTM variants (uni/bi, 1-3 layers, attention, the seed's out[:, -1]) on BBC News and CO2 forecasting."

# name: (bidirectional, layers, pooling). "padded_last" is the seed's out[:, -1, :] on the padded batch.
VARIANTS = {
    "uni": (False, 1, "last"),
    "bi": (True, 1, "last"),
    "uni_2layer": (False, 2, "last"),
    "uni_3layer": (False, 3, "last"),
    "uni_attention": (False, 1, "attention"),
    "bi_padded_last": (True, 1, "padded_last"),
}
TEXT_ONLY = ("bi_padded_last",)  # forecast windows all have the same length: nothing is padded
SERIES_BATCH = 64  # the forecast recipe's minibatch size: the series task is trained as that recipe trains it
# The reference arm: textclass's "lstm" model (bidirectional, attention pooling) with textclass's full-profile
# settings, trained here on lstm's data because no recipe imports another. tests/test_lstm.py checks that these
# still are textclass's Config defaults.
REFERENCE = "textclass_bilstm"
REFERENCE_SETTINGS = {"embed_dim": 64, "hidden": 64, "dropout": 0.3, "batch_size": 32, "lr": 0.01,
                      "weight_decay": 1e-4, "clip": 1.0, "eval_every": 50}


@dataclass
class Config(BaseConfig):
    variants: list[str] = param(list(VARIANTS), "variants to train", choices=tuple(VARIANTS))
    tasks: list[str] = param(["text", "series"], "tasks: BBC topics and/or CO2 forecasting", choices=("text", "series"))
    dataset: str = param("bbc", "text dataset", choices=textdata.DATASETS)
    series: str = param("co2", "series to forecast", choices=S.SERIES)
    max_len: int = param(128, "tokens kept per text (the start of it)", low=8, high=4096)
    # textclass's tokenization: BPE (its training repeats exactly; WordPiece's does not) on the training texts
    # cut to 2,048 characters, so the variants and the reference arm read exactly textclass's LSTM's tokens.
    vocab_size: int = param(30000, "BPE vocabulary size", low=100, high=100000)
    chars: int = param(2048, "characters of each text kept for the tokenizer (textclass: 8 x its max_len)",
                       low=8)
    embed_dim: int = param(64, "token embedding size", low=2)
    hidden: int = param(64, "hidden size per direction (text and series)", low=2)
    dropout: float = param(0.3, "dropout between stacked layers and before the head", low=0, high=1, high_open=True)
    series_hidden: int = param(32, "hidden size per direction for the forecasting variants", low=1)
    text_steps: int = param(300, "training steps per text variant", low=1)
    reference_steps: int = param(600, "training steps of the reference arm, textclass's packed BiLSTM with"
                                 " textclass's settings (textclass: 600; 0 = no reference arm)", low=0)
    series_steps: int = param(300, "training steps per forecasting variant", low=1)
    batch_size: int = param(32, "minibatch size", low=2)
    lr: float = param(3e-3, "AdamW learning rate", low=0, low_open=True)
    weight_decay: float = param(1e-4, "AdamW weight decay", low=0)
    clip: float = param(1.0, "gradient-norm clip (0 = off)", low=0)
    eval_every: int = param(25, "validate every N steps; the best validation score is kept", low=1)
    window_seasons: int = param(3, "forecast input window in seasons", low=1, high=20)
    max_val_origins: int = param(100, "forecast validation origins (0 = all)", low=0)


profiles = {
    "smoke": {"dataset": "drugs", "variants": ["uni", "bi", "uni_attention", "bi_padded_last"], "max_len": 32,
              "vocab_size": 1000, "chars": 256, "embed_dim": 16, "hidden": 8, "series_hidden": 8, "text_steps": 10,
              "reference_steps": 10, "series_steps": 10, "eval_every": 5},
    "quick": {"variants": ["uni", "bi", "uni_2layer", "uni_attention", "bi_padded_last"], "max_len": 64,
              "text_steps": 150, "reference_steps": 150, "series_steps": 150},
    "full": {},
}

targets = [
    # The seed's out[:, -1] on a padded batch costs the bidirectional LSTM at least 5 points of macro-F1...
    Target("text_bi_minus_padded_last_macro_f1", ">=", 0.05),
    # ...and on 128-token news, attention pooling beats the last state of the same one-layer LSTM by 5 points.
    Target("text_attention_minus_uni_macro_f1", ">=", 0.05),
    # The absolute bar: the variant picked on validation is within 3 points of textclass's packed BiLSTM, trained
    # beside it on the same tokens and split, so the comparisons above are between LSTMs trained about as well.
    Target("bbc_best_variant_minus_textclass_bilstm_macro_f1", ">=", -0.03, when=(("dataset", "bbc"),)),
    Target("series_best_mae_over_snaive", "<=", 1.0),  # the best variant beats seasonal naive on CO2
]


# ---- the text task: packed sequences, the checkpoint with the best validation macro-F1 -------------------
def text_model(cfg: Config, name: str, data: textdata.Prepared) -> LSTMClassifier:
    bidirectional, layers, pooling = (True, 1, "attention") if name == REFERENCE else VARIANTS[name]
    torch.manual_seed(cfg.seed)  # every variant starts from the same initialisation stream
    return LSTMClassifier(data.vocab_size, len(data.classes), cfg.embed_dim, cfg.hidden, layers, bidirectional,
                          cfg.dropout, pooling)


def reference_config(cfg: Config) -> Config:
    """`cfg` with textclass's model and training settings: the reference arm is built and trained with these."""
    return replace(cfg, text_steps=cfg.reference_steps, **REFERENCE_SETTINGS)


def train_text(cfg: Config, run: Run, model: LSTMClassifier, data: textdata.Prepared) -> dict:
    """Train on the training split, keep the best validation macro-F1, reload it, score it on test."""
    ids, lengths, labels = data.ids[data.train], data.lengths[data.train], data.labels[data.train]
    model = model.to(run.device)
    # Fused, as textclass trains: on a CPU it is faster for the large embedding table, all of whose rows AdamW updates.
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    trainer = Trainer(run, cfg.text_steps, every=cfg.eval_every, clip_norm=cfg.clip, model=model,
                      optimizer=optimizer, scaler=grad_scaler(run.device, cfg.amp))
    train_s = trainer.extra.get("train_s", 0.0)
    model.train()
    t0 = time.perf_counter()
    for step, idx in trainer.steps(batches(len(ids), min(cfg.batch_size, len(ids)), cfg.seed, trainer.start)):
        # Cut the batch to its longest text: fewer padded steps to run. Packing ignores padding anyway; the
        # seed's padded_last still ends on the shorter texts' padding. `lengths` is on the CPU: no device read.
        width = int(lengths[idx].max())
        x, y = ids[idx, :width].to(run.device), labels[idx].to(run.device)
        with autocast(run.device, cfg.amp):
            loss = nn.functional.cross_entropy(model(x, lengths[idx]), y)
        trainer.backward(loss)
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.text_steps:
            trainer.extra["train_s"] = train_s + time.perf_counter() - t0
            val = text_scores(model, data, data.val, run.device)
            run.log({"train/loss": loss.item(), "eval/val_macro_f1": val["macro_f1"],
                     "eval/val_accuracy": val["accuracy"]}, done)
            trainer.save_best(val["macro_f1"])
    train_s += time.perf_counter() - t0

    best = trainer.load_best(model)
    result = text_scores(model, data, data.test, run.device)
    result.update(val_macro_f1=trainer.best_value, best_step=best["step"], train_s=train_s, params=n_params(model))
    return run.finish(result)


# ---- the forecasting task: direct 12-step forecasts, the checkpoint with the best validation MAE ------------
def series_model(cfg: Config, name: str, p: S.Prepared) -> LSTMForecaster:
    bidirectional, layers, pooling = VARIANTS[name]
    torch.manual_seed(cfg.seed)
    return LSTMForecaster(2, p.s.horizon, cfg.series_hidden, layers, bidirectional, cfg.dropout, pooling)


def train_series(cfg: Config, run: Run, model: LSTMForecaster, p: S.Prepared) -> dict:
    """Train on windows whose targets lie in the training split, keep the best validation MAE, reload it, test.

    The LSTM reads scaled differences of the window and predicts the correction to seasonal naive
    (nn/forecasting.py), all 12 steps at once.
    """
    x, y = training_pairs(p, p.s.horizon, "seasonal")
    val_at = S.val_origins(p, cfg.max_val_origins)
    model = model.to(run.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    trainer = Trainer(run, cfg.series_steps, every=cfg.eval_every, clip_norm=cfg.clip, model=model,
                      optimizer=optimizer, scaler=grad_scaler(run.device, cfg.amp))
    train_s = trainer.extra.get("train_s", 0.0)
    model.train()
    t0 = time.perf_counter()
    for step, idx in trainer.steps(batches(len(x), min(SERIES_BATCH, len(x)), cfg.seed, trainer.start)):
        xb, yb = take(idx, x, y, device=run.device)
        with autocast(run.device, cfg.amp):
            loss = nn.functional.mse_loss(model(xb).float(), yb)
        trainer.backward(loss)
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.series_steps:
            trainer.extra["train_s"] = train_s + time.perf_counter() - t0
            val_mae = series_scores(model, p, val_at, run.device)["mae"]
            run.log({"train/loss": loss.item(), "eval/val_mae": val_mae}, done)
            trainer.save_best(val_mae, higher_is_better=False)
    train_s += time.perf_counter() - t0

    trainer.load_best(model)
    result = series_scores(model, p, p.origins("test"), run.device)
    result.update(val_mae=trainer.best_value, train_s=train_s, params=n_params(model))
    return run.finish(result)


# ---- the recipe ---------------------------------------------------------------------------------------------
def prepare_text(cfg: Config) -> textdata.Prepared:
    """Tokenized texts and textclass's stratified, seeded split (10% validation, 20% test of each class)."""
    return textdata.prepare(cfg.dataset, cfg.seed, "bpe", cfg.vocab_size, cfg.max_len, val_fraction=0.1,
                            test_fraction=0.2, chars=cfg.chars)


def text_arms(cfg: Config) -> list[tuple[str, Config]]:
    """(name, settings) of each text model trained: the chosen variants, then the reference arm."""
    return [(name, cfg) for name in cfg.variants] + ([(REFERENCE, reference_config(cfg))] if cfg.reference_steps
                                                     else [])


def run(cfg: Config, run: Run) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    if "text" in cfg.tasks:
        data = prepare_text(cfg)
        for name, settings in text_arms(cfg):
            sub = run.variant(f"text_{name}")
            r = sub.result or train_text(settings, sub, text_model(settings, name, data), data)
            for key in ("macro_f1", "accuracy", "val_macro_f1", "params", "train_s"):
                metrics[f"text_{name}_{key}"] = r[key]
        correct = [v for v in cfg.variants if v not in TEXT_ONLY]
        test_f1 = [metrics[f"text_{v}_macro_f1"] for v in correct]
        metrics["text_min_macro_f1"] = min(test_f1) if test_f1 else None
        metrics["text_best_macro_f1"] = max(test_f1) if test_f1 else None
        # The best variant is the one with the best validation macro-F1 (the first of equals); test only scores it.
        best = max(correct, key=lambda v: metrics[f"text_{v}_val_macro_f1"]) if correct else None
        metrics["text_best_variant_macro_f1"] = metrics[f"text_{best}_macro_f1"] if best else None
        metrics[f"{cfg.dataset}_best_variant_minus_textclass_bilstm_macro_f1"] = difference(
            metrics, "text_best_variant_macro_f1", f"text_{REFERENCE}_macro_f1")
        metrics["text_bi_minus_padded_last_macro_f1"] = difference(metrics, "text_bi_macro_f1",
                                                                   "text_bi_padded_last_macro_f1")
        metrics["text_attention_minus_uni_macro_f1"] = difference(metrics, "text_uni_attention_macro_f1",
                                                                  "text_uni_macro_f1")
    if "series" in cfg.tasks:
        p = S.prepare(cfg.series, cfg.window_seasons)
        base, _ = S.baselines(p)
        maes = []
        for name in series_variants(cfg):
            sub = run.variant(f"series_{name}")
            r = sub.result or train_series(cfg, sub, series_model(cfg, name, p), p)
            for key in ("mae", "mase", "params", "train_s"):
                metrics[f"series_{name}_{key}"] = r[key]
            maes.append(r["mae"])
        metrics["series_snaive_mae"] = base["snaive"]["mae"]
        metrics["series_ets_mae"] = base["ets"]["mae"]
        metrics["series_best_mae_over_snaive"] = min(maes) / base["snaive"]["mae"] if maes else None
    plot_comparison(cfg, run, metrics)
    return metrics


def series_variants(cfg: Config) -> list[str]:
    return [name for name in cfg.variants if name not in TEXT_ONLY]


def difference(metrics: dict, a: str, b: str) -> float | None:
    """metrics[a] - metrics[b], or None when either was not measured (--variants chose fewer, no reference arm)."""
    return metrics[a] - metrics[b] if metrics.get(a) is not None and metrics.get(b) is not None else None


def n_params(model: nn.Module) -> int:
    return sum(q.numel() for q in model.parameters())


# ---- evaluation ---------------------------------------------------------------------------------------------
def text_scores(model: nn.Module, data: textdata.Prepared, split: torch.Tensor, device: torch.device) -> dict:
    """Accuracy and macro-F1 (and macro precision and recall) on the texts of `split`, in eval mode."""
    preds = predict_logits(model, data.ids[split], data.lengths[split], device).argmax(1)
    return classification_metrics(preds, data.labels[split], len(data.classes))


def series_scores(model: nn.Module, p: S.Prepared, at: np.ndarray, device: torch.device) -> dict:
    """MAE, RMSE and MASE of the direct forecasts from every origin in `at`, in eval mode."""
    pred = rolling_forecast(model, p, at, "direct", "seasonal", device)
    return S.forecast_metrics(pred, p.targets(at, p.s.horizon).double().numpy(), p.scale)


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Test metrics of each variant recomputed from its best checkpoint."""
    out: dict[str, float] = {}
    if "text" in cfg.tasks:
        data = prepare_text(cfg)
        for name, settings in text_arms(cfg):
            model = text_model(settings, name, data).to(run.device)
            run.variant(f"text_{name}").load(model, which="best")
            m = text_scores(model, data, data.test, run.device)
            out[f"text_{name}_macro_f1"], out[f"text_{name}_accuracy"] = m["macro_f1"], m["accuracy"]
    if "series" in cfg.tasks:
        p = S.prepare(cfg.series, cfg.window_seasons)
        for name in series_variants(cfg):
            model = series_model(cfg, name, p).to(run.device)
            run.variant(f"series_{name}").load(model, which="best")
            m = series_scores(model, p, p.origins("test"), run.device)
            out[f"series_{name}_mae"], out[f"series_{name}_mase"] = m["mae"], m["mase"]
    return out


# ---- plots --------------------------------------------------------------------------------------------------
def plot_comparison(cfg: Config, run: Run, metrics: dict) -> None:
    """Metric against parameter count for each variant, one panel per task."""
    if not run.is_main:
        return
    panels = [(t, "macro_f1" if t == "text" else "mae") for t in cfg.tasks]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (task, key) in zip(axes[0], panels):
        names = [v for v in [*cfg.variants, REFERENCE] if f"{task}_{v}_{key}" in metrics]
        values = [metrics[f"{task}_{v}_{key}"] for v in names]
        colors = {**{v: "tab:red" for v in TEXT_ONLY}, REFERENCE: "tab:green"}
        ax.barh(np.arange(len(names)), values, color=[colors.get(v, "tab:blue") for v in names])
        ax.set_yticks(np.arange(len(names)), [f"{v} ({metrics[f'{task}_{v}_params'] / 1000:.0f}k)" for v in names])
        title = f"{cfg.dataset} test macro-F1" if task == "text" else f"{cfg.series} 12-step MAE (rolling origin)"
        ax.set(title=title, xlabel=key)
        if task == "text" and values:
            ax.set_xlim(max(0.0, min(values) - 0.05), 1.0)
        if task == "series" and "series_snaive_mae" in metrics:
            ax.axvline(metrics["series_snaive_mae"], color="grey", linestyle="--", label="seasonal naive")
            ax.axvline(metrics["series_ets_mae"], color="green", linestyle=":", label="Holt-Winters")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run.plot_path("variants"), dpi=100)
    plt.close(fig)

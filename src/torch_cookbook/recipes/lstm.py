"""LSTM variants compared on one text task and one forecasting task: direction, depth, attention pooling.

Seeds Q33 and Q62 describe the LSTM (gates, long-range memory) and name its variants (bidirectional,
multi-layer, attention) without measuring them; Q62's model takes `out[:, -1, :]` as the sequence summary.
This recipe trains every variant on the same data and reports metric, parameter count and training time:
BBC News topic classification (packed variable-length sequences) and 12-month-ahead CO2 forecasting.
It also trains the seed's `out[:, -1, :]` on a padded batch with a bidirectional LSTM, to measure the bug:
that position comes after the padding, and the backward direction there has read one (padding) step.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from torch_cookbook.data import series as S
from torch_cookbook.data import text as textdata
from torch_cookbook.engine.config import BaseConfig, Target, param
from torch_cookbook.engine.runs import Run
from torch_cookbook.nn.lstm import LSTMClassifier, LSTMForecaster
from torch_cookbook.nn.text import classification_metrics, predict_logits
from torch_cookbook.recipes import forecast as fc
from torch_cookbook.recipes import textclass as tc

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


@dataclass
class Config(BaseConfig):
    variants: list[str] = param(list(VARIANTS), "variants to train", choices=tuple(VARIANTS))
    tasks: list[str] = param(["text", "series"], "tasks: BBC topics and/or CO2 forecasting", choices=("text", "series"))
    dataset: str = param("bbc", "text dataset", choices=textdata.DATASETS)
    series: str = param("co2", "series to forecast", choices=("co2", "seattle"))
    max_len: int = param(128, "tokens kept per text", low=8, high=4096)
    vocab_size: int = param(8000, "WordPiece vocabulary size", low=100, high=100000)
    embed_dim: int = param(64, "token embedding size", low=2)
    hidden: int = param(64, "hidden size per direction (text and series)", low=2)
    dropout: float = param(0.3, "dropout between stacked layers and before the head", low=0, high=1, high_open=True)
    series_hidden: int = param(32, "hidden size per direction for the forecasting variants", low=1)
    text_steps: int = param(300, "training steps per text variant", low=1)
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
              "vocab_size": 1000, "embed_dim": 16, "hidden": 8, "series_hidden": 8, "text_steps": 10,
              "series_steps": 10, "eval_every": 5},
    "quick": {"variants": ["uni", "bi", "uni_2layer", "uni_attention", "bi_padded_last"], "max_len": 64,
              "text_steps": 150, "series_steps": 150},
    "full": {},
}

targets = [
    # The seed's out[:, -1] on a padded batch costs the bidirectional LSTM at least 5 points of macro-F1...
    Target("text_bi_minus_padded_last_macro_f1", ">=", 0.05),
    # ...and on 128-token news, attention pooling beats the last state of the same one-layer LSTM by 5 points.
    Target("text_attention_minus_uni_macro_f1", ">=", 0.05),
    Target("series_best_mae_over_snaive", "<=", 1.0),  # the best variant beats seasonal naive on CO2
]


# ---- the text task: settings textclass.train_text_model reads --------------------------------------------
@dataclass
class _Train:
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    clip: float
    eval_every: int
    seed: int
    amp: str
    max_val_origins: int = 0


def text_variant(cfg: Config, run: Run, name: str, data: textdata.Prepared) -> dict:
    bidirectional, layers, pooling = VARIANTS[name]
    torch.manual_seed(cfg.seed)
    model = LSTMClassifier(data.vocab_size, len(data.classes), cfg.embed_dim, cfg.hidden, layers, bidirectional,
                           cfg.dropout, pooling)
    settings = _Train(cfg.text_steps, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.clip, cfg.eval_every, cfg.seed,
                      cfg.amp)
    return tc.train_text_model(settings, run, model, data)


def series_variant(cfg: Config, run: Run, name: str, p: fc.Prepared) -> dict:
    bidirectional, layers, pooling = VARIANTS[name]
    torch.manual_seed(cfg.seed)
    model = LSTMForecaster(2, p.s.horizon, cfg.series_hidden, layers, bidirectional, cfg.dropout, pooling)
    settings = _Train(cfg.series_steps, 64, cfg.lr, 0.0, cfg.clip, cfg.eval_every, cfg.seed, cfg.amp,
                      cfg.max_val_origins)
    return fc.train_forecaster(settings, run, model, p, "direct", "seasonal")


def difference(metrics: dict, a: str, b: str) -> float | None:
    """metrics[a] - metrics[b], or None when either variant was not trained (--variants chose fewer)."""
    return metrics[a] - metrics[b] if a in metrics and b in metrics else None


def run(cfg: Config, run: Run) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    if "text" in cfg.tasks:
        data = textdata.prepare(cfg.dataset, cfg.seed, "wordpiece", cfg.vocab_size, cfg.max_len)
        for name in cfg.variants:
            sub = run.variant(f"text_{name}")
            r = sub.result or text_variant(cfg, sub, name, data)
            for key in ("macro_f1", "accuracy", "params", "train_s"):
                metrics[f"text_{name}_{key}"] = r[key]
        correct = [metrics[f"text_{v}_macro_f1"] for v in cfg.variants if v not in TEXT_ONLY]
        metrics["text_min_macro_f1"] = min(correct) if correct else None
        metrics["text_best_macro_f1"] = max(correct) if correct else None
        metrics["text_bi_minus_padded_last_macro_f1"] = difference(metrics, "text_bi_macro_f1",
                                                                   "text_bi_padded_last_macro_f1")
        metrics["text_attention_minus_uni_macro_f1"] = difference(metrics, "text_uni_attention_macro_f1",
                                                                  "text_uni_macro_f1")
    if "series" in cfg.tasks:
        p = fc.prepare(fc.Config(series=[cfg.series], window_seasons=cfg.window_seasons), cfg.series)
        base, _ = fc.baselines(p)
        maes = []
        for name in cfg.variants:
            if name in TEXT_ONLY:
                continue
            sub = run.variant(f"series_{name}")
            r = sub.result or series_variant(cfg, sub, name, p)
            for key in ("mae", "mase", "params", "train_s"):
                metrics[f"series_{name}_{key}"] = r[key]
            maes.append(r["mae"])
        metrics["series_snaive_mae"] = base["snaive"]["mae"]
        metrics["series_ets_mae"] = base["ets"]["mae"]
        metrics["series_best_mae_over_snaive"] = min(maes) / base["snaive"]["mae"] if maes else None
    plot_comparison(cfg, run, metrics)
    return metrics


def plot_comparison(cfg: Config, run: Run, metrics: dict) -> None:
    """Metric against parameter count for each variant, one panel per task."""
    if not run.is_main:
        return
    panels = [(t, "macro_f1" if t == "text" else "mae") for t in cfg.tasks]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (task, key) in zip(axes[0], panels):
        names = [v for v in cfg.variants if f"{task}_{v}_{key}" in metrics]
        values = [metrics[f"{task}_{v}_{key}"] for v in names]
        ax.barh(np.arange(len(names)), values, color=["tab:red" if v in TEXT_ONLY else "tab:blue" for v in names])
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


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Test metrics of each variant recomputed from its best checkpoint."""
    from torch_cookbook.engine.checkpoint import load_checkpoint
    from torch_cookbook.engine.config import config_hash

    out: dict[str, float] = {}
    if "text" in cfg.tasks:
        data = textdata.prepare(cfg.dataset, cfg.seed, "wordpiece", cfg.vocab_size, cfg.max_len)
        for name in cfg.variants:
            b, layers, pooling = VARIANTS[name]
            model = LSTMClassifier(data.vocab_size, len(data.classes), cfg.embed_dim, cfg.hidden, layers, b,
                                   cfg.dropout, pooling)
            ckpt = load_checkpoint(run.dir / "variants" / f"text_{name}" / "checkpoints" / "best.pt", run.recipe,
                                   config_hash(cfg))
            model.load_state_dict(ckpt["state"]["model"])
            preds = predict_logits(model, data.ids[data.test], data.lengths[data.test], run.device).argmax(1)
            m = classification_metrics(preds, data.labels[data.test], len(data.classes))
            out[f"text_{name}_macro_f1"], out[f"text_{name}_accuracy"] = m["macro_f1"], m["accuracy"]
    if "series" in cfg.tasks:
        p = fc.prepare(fc.Config(series=[cfg.series], window_seasons=cfg.window_seasons), cfg.series)
        at = p.origins("test")
        actual = p.targets(at, p.s.horizon).double().numpy()
        for name in cfg.variants:
            if name in TEXT_ONLY:
                continue
            b, layers, pooling = VARIANTS[name]
            model = LSTMForecaster(2, p.s.horizon, cfg.series_hidden, layers, b, cfg.dropout, pooling)
            ckpt = load_checkpoint(run.dir / "variants" / f"series_{name}" / "checkpoints" / "best.pt", run.recipe,
                                   config_hash(cfg))
            model.load_state_dict(ckpt["state"]["model"])
            pred = fc.rolling_forecast(model, p, at, "direct", "seasonal", run.device)
            m = S.forecast_metrics(pred, actual, p.scale)
            out[f"series_{name}_mae"], out[f"series_{name}_mase"] = m["mae"], m["mase"]
    return out

"""Time-series forecasting: LSTM ensembles (direct vs recursive) against naive, seasonal naive and Holt-Winters.

Seed Q40's LSTM forecaster does not run as written: it pairs single time steps where the model expects windows,
never scales the series, and "forecasts" by feeding the whole test series in as one sequence. Here the LSTM
reads a sliding window of scaled differences (statistics of the training split only) and predicts the
correction to a seasonal-naive forecast (nn/forecasting.py). Every model is scored by rolling origin: a forecast
of `horizon` steps from every origin in the test period, parameters fixed. Each strategy is an ensemble of
small LSTMs that differ only in initialisation and data order, their forecasts averaged. Series: monthly Mauna
Loa CO2 and hourly Seattle temperatures (data/series.py), or your own with --data. Docs: docs/forecast.md
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from torch_cookbook.data import series as S
from torch_cookbook.engine.config import ON_BUNDLED_DATA, BaseConfig, Target, param
from torch_cookbook.engine.loop import autocast, batches, grad_scaler, take
from torch_cookbook.engine.repro import member_seed
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import DataError
from torch_cookbook.nn.forecasting import forecast, rolling_forecast, training_pairs
from torch_cookbook.nn.lstm import LSTMForecaster

seed_question = "Q40 time-series forecasting"
summary = ("LSTM forecaster (direct vs recursive, 5-model ensembles) vs naive, seasonal naive and Holt-Winters on CO2 "
           "and hourly temps.")

STRATEGIES = ("direct", "recursive")


@dataclass
class Config(BaseConfig):
    series: list[str] = param(["co2", "seattle"], "series to forecast", choices=S.SERIES)
    data: str = param("", "your own series instead of --series: a CSV/TSV/JSONL file (.gz/.bz2 too) with a time and "
                          "a value column, sorted by time")
    time_column: str = param("time", "--data: the column (JSONL: key) of the times")
    value_column: str = param("value", "--data: the column (JSONL: key) of the values")
    freq: str = param("", "--data: the pandas offset alias of the steps (h, D, W, MS, ...); empty: inferred")
    max_gap: int = param(3, "--data: missing steps in a row (missing times, empty or NaN values) that linear "
                            "interpolation fills; a longer gap is refused", low=0)
    val_fraction: float = param(0.1, "--data: share of the steps, before the test split, that is validation",
                                low=0.01, high=0.5)
    test_fraction: float = param(0.2, "--data: share of the steps at the end that is the rolling-origin test",
                                 low=0.01, high=0.5)
    season: int = param(0, "season length in steps; 0: the series' own (--data: from the frequency, e.g. h 24, "
                           "D 7, W 52, MS 12)", low=0)
    horizon: int = param(0, "steps ahead to forecast; 0: the series' own (--data: one season)", low=0)
    ets_max_steps: int = param(S.ETS_MAX_STEPS, "Holt-Winters' parameters are estimated on at most the last N steps "
                                                "before each split (statsmodels is slow on long series)", low=100)
    strategies: list[str] = param(list(STRATEGIES), "multi-step strategies to train", choices=STRATEGIES)
    window_seasons: int = param(3, "input window length in seasons (3 = 36 months or 72 hours)", low=1, high=20)
    base: str = param("seasonal", "the LSTM predicts the change from this simple forecast",
                      choices=("seasonal", "last"))
    hidden: int = param(8, "LSTM hidden size", low=1)
    highway_seasons: int = param(1, "linear highway from the last N seasons of input to the outputs: a linear path "
                                    "extrapolates a trend, which saturating LSTM units cannot (0 = pure LSTM)",
                                 low=0, high=20)
    layers: int = param(1, "stacked LSTM layers", low=1, high=4)
    dropout: float = param(0.0, "dropout between stacked LSTM layers", low=0, high=1, high_open=True)
    steps: int = param(1000, "training steps per model", low=1)
    batch_size: int = param(64, "minibatch size", low=2)
    lr: float = param(2e-3, "AdamW learning rate", low=0, low_open=True)
    weight_decay: float = param(0.0, "AdamW weight decay", low=0)
    clip: float = param(1.0, "gradient-norm clip (0 = off)", low=0)
    eval_every: int = param(20, "validate every N steps; the best validation MAE is kept", low=1)
    max_val_origins: int = param(100, "validate on at most this many origins (0 = all), evenly spaced", low=0)
    ensemble: int = param(5, "LSTMs per strategy, each with its own initialisation and data order; their "
                             "forecasts are averaged", low=1, high=50)

    @property
    def sources(self) -> list[str]:  # what a run forecasts: a user's --data, named "user", or the bundled series
        return [S.USER] if self.data else self.series


profiles = {
    "smoke": {"series": ["co2"], "hidden": 8, "steps": 20, "eval_every": 10, "batch_size": 32, "ensemble": 2},
    "quick": {"steps": 300, "eval_every": 25, "ensemble": 2},
    "full": {},
}

AS_BUNDLED = (*ON_BUNDLED_DATA, ("season", 0), ("horizon", 0))  # the targets are claims about the series as shipped
targets = [
    Target("co2_lstm_mae_over_snaive", "<=", 1.0, when=AS_BUNDLED),  # below seasonal naive...
    Target("co2_lstm_mae_over_ets", "<=", 1.1, when=AS_BUNDLED),  # ...and within 10% of Holt-Winters
    Target("seattle_lstm_mae_over_snaive", "<=", 1.0, when=AS_BUNDLED),
    Target("seattle_lstm_mae_over_ets", "<=", 1.1, when=AS_BUNDLED),
]
DATA_FIELDS = {"data": ("time_column", "value_column", "freq")}  # the run records this data and its columns


def check_launch(cfg: Config) -> None:
    if cfg.data or cfg.season or cfg.horizon:  # read and check the series before the run directory exists
        for name in cfg.sources:
            prepare(cfg, name)


def prepare(cfg: Config, name: str) -> S.Prepared:
    return S.prepare(name, cfg.window_seasons, S.UserSeries.given(cfg), cfg.season, cfg.horizon)


# ---- one LSTM: train, keep the best on validation, reload it, test ------------------------------------------
def make_model(cfg: Config, p: S.Prepared, strategy: str, seed: int | None = None) -> LSTMForecaster:
    """A forecaster initialised from `seed` (default cfg.seed): all `horizon` outputs, or one for recursive."""
    torch.manual_seed(cfg.seed if seed is None else seed)
    horizon = p.s.horizon if strategy == "direct" else 1
    return LSTMForecaster(2, horizon, cfg.hidden, cfg.layers, dropout=cfg.dropout,
                          highway_window=min(cfg.highway_seasons * p.s.season, p.window))


def train_forecaster(cfg: Config, run: Run, model: nn.Module, p: S.Prepared, strategy: str, seed: int) -> dict:
    """Train on windows whose targets lie in the training split; keep the best validation MAE; score on test.

    `seed` sets the minibatch order, so ensemble members see the data in different orders.
    """
    horizon = p.s.horizon if strategy == "direct" else 1  # recursive: a one-step model, applied repeatedly
    x, y = training_pairs(p, horizon, cfg.base)  # y: the correction to the base forecast, in units of sigma
    val_at = S.val_origins(p, cfg.max_val_origins)
    val_actual = p.targets(val_at, p.s.horizon).double().numpy()

    model = model.to(run.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    trainer = Trainer(run, cfg.steps, every=cfg.eval_every, clip_norm=cfg.clip, model=model, optimizer=optimizer,
                      scaler=grad_scaler(run.device, cfg.amp))
    train_s = trainer.extra.get("train_s", 0.0)
    model.train()
    t0 = time.perf_counter()
    for step, idx in trainer.steps(batches(len(x), min(cfg.batch_size, len(x)), seed, trainer.start)):
        xb, yb = take(idx, x, y, device=run.device)
        with autocast(run.device, cfg.amp):
            loss = nn.functional.mse_loss(model(xb).float(), yb)
        trainer.backward(loss)
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            trainer.extra["train_s"] = train_s + time.perf_counter() - t0
            pred = rolling_forecast(model, p, val_at, strategy, cfg.base, run.device)
            val_mae = float(np.mean(np.abs(pred - val_actual)))
            run.log({"train/loss": loss.item(), "eval/val_mae": val_mae}, done)
            trainer.save_best(val_mae, higher_is_better=False)
    train_s += time.perf_counter() - t0

    trainer.load_best(model)
    test_at = p.origins("test")
    pred = rolling_forecast(model, p, test_at, strategy, cfg.base, run.device)
    result = S.forecast_metrics(pred, p.targets(test_at, p.s.horizon).double().numpy(), p.scale)
    result.update(val_mae=trainer.best_value, train_s=train_s, params=sum(q.numel() for q in model.parameters()))
    return run.finish(result)


# ---- the ensemble: members that differ only in initialisation and data order, their forecasts averaged --------
def member_name(series: str, strategy: str, member: int) -> str:
    return f"{series}_lstm_{strategy}_{member}"


def ensemble_forecast(models: list[nn.Module], p: S.Prepared, at: np.ndarray, strategy: str, base: str,
                      device: torch.device) -> np.ndarray:
    """The mean of the members' rolling-origin forecasts (each recursive member rolls out on its own)."""
    return np.mean([rolling_forecast(m, p, at, strategy, base, device) for m in models], axis=0)


def ensemble_val_mae(cfg: Config, run: Run, models: list[nn.Module], p: S.Prepared, strategy: str) -> float:
    """MAE of the averaged members on the same validation origins each member was selected on."""
    at = S.val_origins(p, cfg.max_val_origins)
    pred = ensemble_forecast(models, p, at, strategy, cfg.base, run.device)
    return float(np.mean(np.abs(pred - p.targets(at, p.s.horizon).double().numpy())))


def ensemble_scores(cfg: Config, run: Run, p: S.Prepared, strategy: str) -> tuple[dict[str, float], np.ndarray]:
    """Validation MAE and test metrics of the averaged members, from their best checkpoints; test forecasts.

    Averaging models that differ only in initialisation and data order cancels part of each one's error.
    """
    models = load_ensemble(cfg, run, p, strategy)
    test_at = p.origins("test")
    test_pred = ensemble_forecast(models, p, test_at, strategy, cfg.base, run.device)
    scores = S.forecast_metrics(test_pred, p.targets(test_at, p.s.horizon).double().numpy(), p.scale)
    scores["val_mae"] = ensemble_val_mae(cfg, run, models, p, strategy)
    return scores, test_pred


def load_ensemble(cfg: Config, run: Run, p: S.Prepared, strategy: str) -> list[LSTMForecaster]:
    """Every member of one strategy's ensemble, from its best checkpoint."""
    models = []
    for m in range(cfg.ensemble):
        model = make_model(cfg, p, strategy, seed=member_seed(cfg.seed, m))
        run.variant(member_name(p.s.name, strategy, m)).load(model, which="best")
        models.append(model.to(run.device).eval())
    return models


# ---- the recipe ---------------------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for name in cfg.sources:
        p = prepare(cfg, name)
        if p.s.source:
            print(S.describe(p.s), flush=True)
        members, scores, preds = {}, {}, {}
        for strategy in cfg.strategies:
            members[strategy] = []
            for m in range(cfg.ensemble):
                sub = run.variant(member_name(name, strategy, m))
                seed = member_seed(cfg.seed, m)  # member 0 is the run's own seed: --ensemble 1 is a single LSTM
                members[strategy].append(sub.result or train_forecaster(
                    cfg, sub, make_model(cfg, p, strategy, seed=seed), p, strategy, seed))
            scores[strategy], preds[strategy] = ensemble_scores(cfg, run, p, strategy)
        base_metrics, base_preds = S.baselines(p, cfg.ets_max_steps)
        metrics.update(series_metrics(name, scores, members, base_metrics))
        best = min(scores, key=lambda k: scores[k]["val_mae"])  # chosen on validation, not test
        plot_forecast(run, p, {"LSTM " + best: preds[best], "Holt-Winters": base_preds["ets"],
                               "seasonal naive": base_preds["snaive"]})
    return metrics


def series_metrics(name: str, scores: dict[str, dict], members: dict[str, list[dict]],
                   base: dict[str, dict[str, float]]) -> dict[str, float]:
    """Flat metrics for one series: baselines, each strategy's ensemble and members, and "the LSTM"."""
    out: dict[str, float] = {}
    for model, m in base.items():
        for key in ("mae", "rmse", "mase"):
            out[f"{name}_{model}_{key}"] = m[key]
    for strategy, r in scores.items():
        for key in ("mae", "rmse", "mase", "val_mae"):
            out[f"{name}_lstm_{strategy}_{key}"] = r[key]
        # The members on their own: how much the average gains over a single LSTM.
        for key in ("mae", "val_mae"):
            out[f"{name}_lstm_{strategy}_member_{key}_mean"] = float(np.mean([r[key] for r in members[strategy]]))
        out[f"{name}_lstm_{strategy}_train_s"] = sum(r["train_s"] for r in members[strategy])
    best = min(scores, key=lambda k: scores[k]["val_mae"])
    out[f"{name}_lstm_mae"] = scores[best]["mae"]
    out[f"{name}_lstm_mase"] = scores[best]["mase"]
    out[f"{name}_lstm_mae_over_snaive"] = scores[best]["mae"] / base["snaive"]["mae"]
    out[f"{name}_lstm_mae_over_ets"] = scores[best]["mae"] / base["ets"]["mae"]
    out[f"{name}_lstm_params"] = sum(r["params"] for r in members[best])  # all members together
    return out


# ---- evaluation ---------------------------------------------------------------------------------------------
def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Test metrics of each strategy's ensemble recomputed from the best checkpoints, and the baselines refitted."""
    out: dict[str, float] = {}
    for name in cfg.sources:
        p = prepare(cfg, name)
        at = p.origins("test")
        actual = p.targets(at, p.s.horizon).double().numpy()
        for strategy in cfg.strategies:
            pred = ensemble_forecast(load_ensemble(cfg, run, p, strategy), p, at, strategy, cfg.base, run.device)
            for key, value in S.forecast_metrics(pred, actual, p.scale).items():
                out[f"{name}_lstm_{strategy}_{key}"] = value
        for model, m in S.baselines(p, cfg.ets_max_steps)[0].items():
            for key in ("mae", "rmse", "mase"):
                out[f"{name}_{model}_{key}"] = m[key]
    return out


# ---- plots and predict --------------------------------------------------------------------------------------
def plot_forecast(run: Run, p: S.Prepared, preds: dict[str, np.ndarray]) -> None:
    """Actual series around the test period and each model's `horizon`-steps-ahead forecast, test region shaded."""
    if not run.is_main:
        return
    s = p.s
    at = p.origins("test")
    shown = slice(max(0, s.test_start - 2 * s.test_len // (4 if s.name == "seattle" else 1)), len(s.values))
    fig, ax = plt.subplots(figsize=(10, 4.2))
    ax.plot(s.times[shown], s.values[shown], color="black", linewidth=1.2, label="actual")
    target_times = s.times[at + s.horizon]
    for (label, pred), style in zip(preds.items(), ("-", "--", ":")):
        ax.plot(target_times, pred[:, -1], style, linewidth=1.1, label=f"{label} ({s.horizon} steps ahead)")
    ax.axvspan(s.times[s.test_start], s.times[-1], color="tab:orange", alpha=0.12, label="test (rolling origin)")
    title = Path(s.source).name if s.source else s.name
    ax.set(title=f"{title}: {s.horizon}-step-ahead forecasts from every origin", ylabel=s.unit)
    ax.legend(fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(run.plot_path(f"forecast_{s.name}"), dpi=100)
    plt.close(fig)


def predict_arguments(parser) -> None:
    parser.add_argument("--series", help="which trained series' model to use (default: the first trained)")
    parser.add_argument("--values", nargs="+", metavar="X",
                        help="the most recent observations, oldest first, at the series' frequency (default: the "
                             "end of the dataset); interior NaN is filled by linear interpolation")
    parser.add_argument("--strategy", choices=STRATEGIES, help="direct or recursive (default: the best on validation)")


def predict(cfg: Config, run: Run, args) -> None:
    name = args.series or cfg.sources[0]
    if name not in cfg.sources:
        raise DataError(f"--series {name}: this run trained on {', '.join(cfg.sources)}")
    p = prepare(cfg, name)
    if args.values is None:
        values = p.s.values
    else:
        try:
            values = np.array([float(v) for v in args.values])
        except ValueError as e:
            raise DataError(f"--values: {e}") from None
        values = S.fill_nan(values)
    if len(values) < p.history:
        raise DataError(f"--values: {len(values)} values given; the {name} model needs at least {p.history} "
                        f"({p.window} for its window + {p.s.season} for seasonal differences)")
    finished = [k for k in cfg.strategies
                if all(run.variant(member_name(name, k, m)).result for m in range(cfg.ensemble))]
    if not finished:
        raise DataError(f"{run.dir} has no finished model for {name}; finish it with `cookbook run --resume {run.dir}`")
    if args.strategy and args.strategy not in finished:
        raise DataError(f"--strategy {args.strategy}: not trained in this run; trained: {', '.join(finished)}")
    # Only the chosen strategy's members are needed; without --strategy, the choice is on validation alone.
    ensembles = {k: load_ensemble(cfg, run, p, k) for k in ([args.strategy] if args.strategy else finished)}
    strategy = args.strategy or min(ensembles, key=lambda k: ensemble_val_mae(cfg, run, ensembles[k], p, k))
    models = ensembles[strategy]
    hist = torch.from_numpy(values[-p.history:]).float()[None]
    with torch.inference_mode():
        pred = np.mean([forecast(m, hist, p, p.s.horizon, strategy, cfg.base, run.device)[0].cpu().numpy()
                        for m in models], axis=0)
    when = ""
    if args.values is None and p.s.freq:  # continuing the series itself: its next times are known
        future = S.next_times(p.s, p.s.horizon)
        when = f", {future[0]} .. {future[-1]} every {p.s.freq}"
    print(f"{name}: next {p.s.horizon} steps{when} ({strategy} LSTM, mean of {cfg.ensemble}, {p.s.unit})")
    print(" ".join(f"{v:.3f}" for v in pred))

"""Time-series forecasting: an LSTM (direct multi-output vs recursive) against naive, seasonal naive and ETS.

Seed Q40 sketches an LSTM forecaster whose code does not run as written: its `TensorDataset(data[:-1], data[1:])`
pairs single time steps while the model expects (batch, seq_len, features) windows, the series is never scaled,
and the final prediction feeds the whole test series in as one sequence. This recipe cuts sliding windows
(inputs: the last `window` steps; targets: the next `horizon` steps), scales with statistics of the training split
only, and scores every model by rolling-origin evaluation: a forecast of `horizon` steps from every origin in
the test period, with the model's parameters fixed (no refitting, no peeking). Each strategy is an ensemble:
`ensemble` small LSTMs that differ only in initialisation and data order, their forecasts averaged.

Series: monthly Mauna Loa CO2 (12 steps ahead, test = last 4 years) and hourly Seattle temperature normals
(24 steps ahead, test = last 8 weeks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from torch_cookbook.data import series as S
from torch_cookbook.engine.checkpoint import load_checkpoint
from torch_cookbook.engine.config import BaseConfig, Target, config_hash, param
from torch_cookbook.engine.loop import autocast, backward_step, grad_scaler, minibatches, take
from torch_cookbook.engine.progress import Progress
from torch_cookbook.engine.runs import Run
from torch_cookbook.errors import DataError
from torch_cookbook.nn.lstm import LSTMForecaster

seed_question = "Q40 time-series forecasting"
summary = ("LSTM forecaster (direct vs recursive, 5-model ensembles) vs naive, seasonal naive and Holt-Winters on CO2 "
           "and hourly temps.")

STRATEGIES = ("direct", "recursive")


@dataclass
class Config(BaseConfig):
    series: list[str] = param(["co2", "seattle"], "series to forecast", choices=S.SERIES)
    strategies: list[str] = param(list(STRATEGIES), "multi-step strategies to train", choices=STRATEGIES)
    window_seasons: int = param(3, "input window length in seasons (3 = 36 months or 72 hours)", low=1, high=20)
    base: str = param("seasonal", "the LSTM predicts the change from this simple forecast",
                      choices=("seasonal", "last"))
    hidden: int = param(8, "LSTM hidden size", low=1)
    highway_seasons: int = param(1, "linear highway from the last N seasons of input to the outputs (0 = pure LSTM)",
                                 low=0, high=20)
    layers: int = param(1, "stacked LSTM layers", low=1, high=4)
    dropout: float = param(0.0, "dropout between stacked LSTM layers", low=0, high=1, high_open=True)
    steps: int = param(1000, "training steps per model", low=1)
    batch_size: int = param(64, "minibatch size", low=2)
    lr: float = param(2e-3, "Adam learning rate", low=0, low_open=True)
    weight_decay: float = param(0.0, "AdamW weight decay", low=0)
    clip: float = param(1.0, "gradient-norm clip (0 = off)", low=0)
    eval_every: int = param(20, "validate every N steps; the best validation MAE is kept", low=1)
    max_val_origins: int = param(100, "validate on at most this many origins (0 = all), evenly spaced", low=0)
    ensemble: int = param(5, "LSTMs per strategy, each with its own initialisation and data order; their "
                             "forecasts are averaged", low=1, high=50)


profiles = {
    "smoke": {"series": ["co2"], "hidden": 8, "steps": 20, "eval_every": 10, "batch_size": 32, "ensemble": 2},
    "quick": {"steps": 300, "eval_every": 25, "ensemble": 2},
    "full": {},
}

targets = [
    Target("co2_lstm_mae_over_snaive", "<=", 1.0),  # below seasonal naive...
    Target("co2_lstm_mae_over_ets", "<=", 1.1),  # ...and within 10% of Holt-Winters
    Target("seattle_lstm_mae_over_snaive", "<=", 1.0),
    Target("seattle_lstm_mae_over_ets", "<=", 1.1),
]


# ---- data: windows, scaling, the base forecast ------------------------------------------------------------
@dataclass
class Prepared:
    """A series with its splits and the tensors a forecaster needs."""

    s: S.Series
    window: int
    sigma: float  # scale: std of one-step changes on the training split only
    scale: float  # MASE denominator: in-sample seasonal-naive MAE on the training split

    @property
    def history(self) -> int:
        """Values each forecast reads: the window plus one season before it (for seasonal differences)."""
        return self.window + self.s.season

    def origins(self, split: str, horizon: int | None = None) -> np.ndarray:
        h = horizon or self.s.horizon
        n, s = len(self.s.values), self.s
        first, end = {"train": (0, s.val_start), "val": (s.val_start, s.test_start), "test": (s.test_start, n)}[split]
        return S.origins(first, end, h, self.history)

    def hist(self, at: np.ndarray) -> torch.Tensor:
        inputs, _ = S.windows(self.s.values, at, self.history, 1)
        return torch.from_numpy(inputs).float()

    def targets(self, at: np.ndarray, horizon: int) -> torch.Tensor:
        _, out = S.windows(self.s.values, at, 1, horizon)
        return torch.from_numpy(out).float()


def prepare(cfg: Config, name: str) -> Prepared:
    s = S.load(name)
    window = cfg.window_seasons * s.season
    train = s.values[:s.val_start]
    return Prepared(s, window, float(np.std(np.diff(train))), S.mase_scale(train, s.season))


def features(hist: torch.Tensor, window: int, season: int, sigma: float) -> torch.Tensor:
    """(B, window+season) absolute values → (B, window, 2): level relative to the last value, seasonal change.

    Both are differences, so a series that drifts outside the training range (CO2 keeps rising) still gives
    inputs of the size the network was trained on.
    """
    recent = hist[:, season:]
    relative = (recent - hist[:, -1:]) / sigma
    seasonal_change = (recent - hist[:, :-season]) / sigma
    return torch.stack([relative, seasonal_change], dim=-1)


def base_forecast(hist: torch.Tensor, horizon: int, season: int, kind: str) -> torch.Tensor:
    """The simple forecast the network corrects: seasonal naive, or the last value repeated."""
    if kind == "last":
        return hist[:, -1:].expand(-1, horizon)
    k = torch.arange(1, horizon + 1)
    back = season * torch.ceil(k / season).long() - k
    return hist[:, hist.size(1) - 1 - back]


def forecast(model: nn.Module, hist: torch.Tensor, p: Prepared, horizon: int, strategy: str, base: str,
             device: torch.device) -> torch.Tensor:
    """Forecasts (B, horizon) from histories (B, history); recursive feeds each one-step forecast back in."""
    hist = hist.to(device)
    if strategy == "direct":
        return base_forecast(hist, horizon, p.s.season, base) + p.sigma * model(
            features(hist, p.window, p.s.season, p.sigma))
    steps = []
    for _ in range(horizon):
        nxt = base_forecast(hist, 1, p.s.season, base) + p.sigma * model(features(hist, p.window, p.s.season, p.sigma))
        steps.append(nxt)
        hist = torch.cat([hist[:, 1:], nxt], dim=1)
    return torch.cat(steps, dim=1)


@torch.inference_mode()
def rolling_forecast(model: nn.Module, p: Prepared, at: np.ndarray, strategy: str, base: str,
                     device: torch.device, batch_size: int = 512) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = [forecast(model, p.hist(at[i:i + batch_size]), p, p.s.horizon, strategy, base, device).cpu()
           for i in range(0, len(at), batch_size)]
    model.train(was_training)
    return torch.cat(out).double().numpy()


# ---- train one LSTM -----------------------------------------------------------------------------------------
def member_seed(seed: int, member: int) -> int:
    """Seed of ensemble member `member`: member 0 is the run's own seed, so `--ensemble 1` is a single LSTM.

    The stride keeps the members of different runs apart (seeds 0-2 of a bench use 0, 1000, ..., 1, 1001, ...).
    """
    return seed + 1000 * member


def make_model(cfg: Config, p: Prepared, strategy: str, bidirectional: bool = False, pooling: str = "last",
               layers: int | None = None, seed: int | None = None) -> LSTMForecaster:
    torch.manual_seed(cfg.seed if seed is None else seed)
    horizon = p.s.horizon if strategy == "direct" else 1
    return LSTMForecaster(2, horizon, cfg.hidden, layers or cfg.layers, bidirectional, cfg.dropout, pooling,
                          highway_window=min(cfg.highway_seasons * p.s.season, p.window))


def val_origins(p: Prepared, max_origins: int) -> np.ndarray:
    """The validation origins, thinned to at most `max_origins` evenly spaced ones (0 = all)."""
    at = p.origins("val")
    if max_origins and len(at) > max_origins:
        at = at[np.linspace(0, len(at) - 1, max_origins).round().astype(int)]
    return at


def train_forecaster(cfg, run: Run, model: nn.Module, p: Prepared, strategy: str, base: str,
                     seed: int | None = None) -> dict:
    """Train on windows whose targets lie in the training split; keep the best validation MAE; score on test.

    `cfg` needs steps, batch_size, lr, weight_decay, clip, eval_every, max_val_origins, seed, amp. `seed`
    (default cfg.seed) sets the minibatch order, so ensemble members see the data in different orders.
    """
    seed = cfg.seed if seed is None else seed
    horizon = p.s.horizon if strategy == "direct" else 1  # recursive: a one-step model, applied repeatedly
    at = p.origins("train", horizon)
    hist, future = p.hist(at), p.targets(at, horizon)
    x = features(hist, p.window, p.s.season, p.sigma)
    y = (future - base_forecast(hist, horizon, p.s.season, base)) / p.sigma
    val_at = val_origins(p, cfg.max_val_origins)
    val_actual = p.targets(val_at, p.s.horizon).double().numpy()

    model = model.to(run.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = grad_scaler(run.device, cfg.amp)
    ckpt = run.checkpointer(every=cfg.eval_every, model=model, optimizer=optimizer, scaler=scaler)
    start = ckpt.restore()
    train_s = ckpt.extra.get("train_s", 0.0)
    model.train()
    t0 = time.perf_counter()
    with Progress(cfg.steps, run.name, start=start) as bar:
        for step, _epoch, idx in minibatches(len(x), min(cfg.batch_size, len(x)), seed, start_step=start):
            if step >= cfg.steps:
                break
            xb, yb = take(idx, x, y, device=run.device)
            with autocast(run.device, cfg.amp):
                loss = nn.functional.mse_loss(model(xb).float(), yb)
            backward_step(loss, optimizer, scaler, clip_norm=cfg.clip)
            done = step + 1
            bar.advance(1, loss=loss.item())
            if done % cfg.eval_every == 0 or done == cfg.steps:
                ckpt.extra["train_s"] = train_s + time.perf_counter() - t0
                pred = rolling_forecast(model, p, val_at, strategy, base, run.device)
                val_mae = float(np.mean(np.abs(pred - val_actual)))
                run.log({"train/loss": loss.item(), "eval/val_mae": val_mae}, done)
                ckpt.save_best(done, val_mae, higher_is_better=False)
            ckpt.after_step(done, loss)
    train_s += time.perf_counter() - t0
    ckpt.save(cfg.steps)

    model.load_state_dict(load_checkpoint(ckpt.best_path, run.recipe, config_hash(run.cfg))["state"]["model"])
    test_at = p.origins("test")
    pred = rolling_forecast(model, p, test_at, strategy, base, run.device)
    result = S.forecast_metrics(pred, p.targets(test_at, p.s.horizon).double().numpy(), p.scale)
    result.update(val_mae=ckpt.best_value, train_s=train_s, params=sum(q.numel() for q in model.parameters()))
    return run.finish(result)


# ---- baselines ----------------------------------------------------------------------------------------------
def baselines(p: Prepared) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Naive, seasonal naive and Holt-Winters on the test origins. Holt-Winters' damped-or-not is chosen on
    validation (parameters fit on train), then its parameters are re-estimated on train+validation."""
    s, y = p.s, p.s.values
    at = p.origins("test")
    actual = p.targets(at, s.horizon).double().numpy()
    val_at = p.origins("val")
    val_actual = p.targets(val_at, s.horizon).double().numpy()
    val_mae = {}
    for damped in (False, True):
        fit = S.fit_ets(y[:s.val_start], s.season, damped)
        val_mae[damped] = float(np.mean(np.abs(S.ets_forecast(fit, y, val_at, s.horizon) - val_actual)))
    damped = val_mae[True] < val_mae[False]
    preds = {"naive": S.naive_forecast(y, at, s.horizon),
             "snaive": S.seasonal_naive_forecast(y, at, s.horizon, s.season),
             "ets": S.ets_forecast(S.fit_ets(y[:s.test_start], s.season, damped), y, at, s.horizon)}
    metrics = {name: S.forecast_metrics(pred, actual, p.scale) for name, pred in preds.items()}
    metrics["ets"]["damped"] = float(damped)
    return metrics, preds


# ---- the ensemble ---------------------------------------------------------------------------------------------
def member_name(series: str, strategy: str, member: int) -> str:
    return f"{series}_lstm_{strategy}_{member}"


def ensemble_forecast(models: list[nn.Module], p: Prepared, at: np.ndarray, strategy: str, base: str,
                      device: torch.device) -> np.ndarray:
    """The mean of the members' rolling-origin forecasts (each recursive member rolls out on its own)."""
    return np.mean([rolling_forecast(m, p, at, strategy, base, device) for m in models], axis=0)


def load_ensemble(cfg: Config, run: Run, p: Prepared, strategy: str) -> list[LSTMForecaster]:
    """Every member of one strategy's ensemble, from its best checkpoint."""
    return [load_model(cfg, run, p, strategy, m) for m in range(cfg.ensemble)]


def ensemble_val_mae(cfg: Config, run: Run, models: list[nn.Module], p: Prepared, strategy: str) -> float:
    """MAE of the averaged members on the same validation origins each member was selected on."""
    at = val_origins(p, cfg.max_val_origins)
    pred = ensemble_forecast(models, p, at, strategy, cfg.base, run.device)
    return float(np.mean(np.abs(pred - p.targets(at, p.s.horizon).double().numpy())))


def ensemble_scores(cfg: Config, run: Run, p: Prepared, strategy: str) -> tuple[dict[str, float], np.ndarray]:
    """Validation MAE and test metrics of the averaged members, from their best checkpoints; test forecasts.

    Averaging models that differ only in initialisation and data order cancels part of each one's error
    (on co2 the members disagree most in the test years, see docs/forecast.md).
    """
    models = load_ensemble(cfg, run, p, strategy)
    test_at = p.origins("test")
    test_pred = ensemble_forecast(models, p, test_at, strategy, cfg.base, run.device)
    scores = S.forecast_metrics(test_pred, p.targets(test_at, p.s.horizon).double().numpy(), p.scale)
    scores["val_mae"] = ensemble_val_mae(cfg, run, models, p, strategy)
    return scores, test_pred


# ---- the recipe ---------------------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for name in cfg.series:
        p = prepare(cfg, name)
        members, scores, preds = {}, {}, {}
        for strategy in cfg.strategies:
            members[strategy] = []
            for m in range(cfg.ensemble):
                sub = run.variant(member_name(name, strategy, m))
                seed = member_seed(cfg.seed, m)
                members[strategy].append(sub.result or train_forecaster(
                    cfg, sub, make_model(cfg, p, strategy, seed=seed), p, strategy, cfg.base, seed=seed))
            scores[strategy], preds[strategy] = ensemble_scores(cfg, run, p, strategy)
        base_metrics, base_preds = baselines(p)
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


def load_model(cfg: Config, run: Run, p: Prepared, strategy: str, member: int = 0) -> LSTMForecaster:
    model = make_model(cfg, p, strategy, seed=member_seed(cfg.seed, member))
    path = run.dir / "variants" / member_name(p.s.name, strategy, member) / "checkpoints" / "best.pt"
    model.load_state_dict(load_checkpoint(path, run.recipe, config_hash(cfg))["state"]["model"])
    return model.to(run.device).eval()


def plot_forecast(run: Run, p: Prepared, preds: dict[str, np.ndarray]) -> None:
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
    ax.set(title=f"{s.name}: {s.horizon}-step-ahead forecasts from every origin", ylabel=s.unit)
    ax.legend(fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(run.plot_path(f"forecast_{s.name}"), dpi=100)
    plt.close(fig)


# ---- eval and predict --------------------------------------------------------------------------------------
def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Test metrics of each strategy's ensemble recomputed from the best checkpoints, and the baselines refitted."""
    out: dict[str, float] = {}
    for name in cfg.series:
        p = prepare(cfg, name)
        at = p.origins("test")
        actual = p.targets(at, p.s.horizon).double().numpy()
        for strategy in cfg.strategies:
            pred = ensemble_forecast(load_ensemble(cfg, run, p, strategy), p, at, strategy, cfg.base, run.device)
            for key, value in S.forecast_metrics(pred, actual, p.scale).items():
                out[f"{name}_lstm_{strategy}_{key}"] = value
        for model, m in baselines(p)[0].items():
            for key in ("mae", "rmse", "mase"):
                out[f"{name}_{model}_{key}"] = m[key]
    return out


def predict_arguments(parser) -> None:
    parser.add_argument("--series", help="which trained series' model to use (default: the first trained)")
    parser.add_argument("--values", nargs="+", metavar="X",
                        help="the most recent observations, oldest first, at the series' frequency (default: the "
                             "end of the dataset); interior NaN is filled by linear interpolation")
    parser.add_argument("--strategy", choices=STRATEGIES, help="direct or recursive (default: the best on validation)")


def predict(cfg: Config, run: Run, args) -> None:
    name = args.series or cfg.series[0]
    if name not in cfg.series:
        raise DataError(f"--series {name}: this run trained on {', '.join(cfg.series)}")
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
    print(f"{name}: next {p.s.horizon} steps ({strategy} LSTM, mean of {cfg.ensemble}, {p.s.unit})")
    print(" ".join(f"{v:.3f}" for v in pred))

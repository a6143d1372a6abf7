"""Config dataclasses: fields with help text and allowed ranges, profiles, targets, validation.

A recipe's `Config` subclasses `BaseConfig` and declares each field with `param(default, help, ...)`.
Validation runs in `__post_init__`, so an invalid config can never be constructed: the CLI, a config
file and library users all get the same one-line `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch_cookbook.errors import ConfigError

PROFILES = ("smoke", "quick", "full")


def param(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """A config field. `low`/`high` bound numbers (inclusive unless `*_open`); `choices` lists allowed values.

    Lists and tuples get their bounds and choices checked per element.
    """
    meta = {"help": help, "choices": choices, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class BaseConfig:
    """Fields every recipe has. Subclasses add their own with `param`."""

    seed: int = param(0, "random seed for python, numpy, torch and data splits", low=0)
    device: str = param("auto", "auto picks cuda, then mps, then cpu", choices=("auto", "cpu", "cuda", "mps"))
    amp: str = param("off", "mixed precision through torch.autocast (fp16 adds a GradScaler)",
                     choices=("off", "bf16", "fp16"))
    threads: int = param(0, "torch intra-op threads; 0 = one per core (at most 4)", low=0, high=256)
    checkpoint_every: int = param(0, "save last.pt every N steps; 0 = the recipe's own cadence", low=0)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class Target:
    """A quality target for the full profile: `metric op value`, e.g. Target("accuracy", ">=", 0.9)."""

    metric: str
    op: str
    value: float
    when: tuple[tuple[str, Any], ...] = ()  # the settings the claim is about, e.g. (("env_id", "CartPole-v1"),)
    # A claim about a bench's seeds together, judged by `cookbook bench`: the recipe's `across_seeds(run_dirs)` gives
    # the metric (a pooled test, say), or else it is the mean over the seeds. One run does not judge it.
    across_seeds: bool = False

    def applies(self, cfg: Any) -> bool:
        return all(getattr(cfg, name, None) == value for name, value in self.when)

    def met(self, metrics: dict[str, float]) -> bool | None:
        """True/False from the measured metric; None when the run did not measure it."""
        measured = metrics.get(self.metric)
        if measured is None or (isinstance(measured, float) and math.isnan(measured)):
            return None
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


ON_BUNDLED_DATA = (("data", ""),)  # `when` of a target that is a claim about a recipe's own data, not a user's --data


def verdict(target: dict[str, Any]) -> str:
    """A summary's target in words: met, not met, not measured, or not judged (a run outside the claim's settings)."""
    if target.get("across_seeds") and "met_all_seeds" not in target:
        return "judged across seeds by `cookbook bench`"
    if "for" in target:
        settings = ("the bundled data" if (k, v) == ("data", "") else f"{k} {v}" for k, v in target["for"].items())
        return "not judged: a target for " + ", ".join(settings)
    return {True: "met", False: "not met", None: "not measured"}[target.get("met")]


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every field's type, range and choices; nested dataclasses are checked recursively."""
    types = field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        name = prefix + f.name
        value = getattr(cfg, f.name)
        expected = types[f.name]
        if dataclasses.is_dataclass(expected):
            if not dataclasses.is_dataclass(value):
                raise ConfigError(f"--{name}: expected a group of settings, got {value!r}")
            validate(value, prefix=name + ".")
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        _check_type(name, value, expected)
        for item in items:
            _check_bounds(name, item, f.metadata)
        if isinstance(value, (list, tuple)) and f.metadata.get("choices"):
            _check_selection(name, value, f.metadata["choices"])


def _check_type(name: str, value: Any, expected: Any) -> None:
    origin = typing.get_origin(expected)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"--{name}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(expected) or (Any,)
        for item in value:
            _check_type(name, item, inner)
        return
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            raise ConfigError(f"--{name}: expected a finite number, got {value!r}")
    elif expected is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"--{name}: expected an integer, got {value!r}")
    elif expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"--{name}: expected true or false, got {value!r}")
    elif expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"--{name}: expected text, got {value!r}")


def _check_selection(name: str, values: list | tuple, choices: tuple) -> None:
    """A list field with choices selects from them: at least one value, none repeated."""
    if not values:
        raise ConfigError(f"--{name}: give at least one of ({', '.join(map(str, choices))})")
    if len(set(values)) != len(values):
        raise ConfigError(f"--{name} {' '.join(map(str, values))}: a value is repeated; give each at most once")


def _check_bounds(name: str, value: Any, meta: Any) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise ConfigError(f"--{name} {value}: not one of the allowed values ({allowed})")
    low, high = meta.get("low"), meta.get("high")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        too_low = low is not None and (value <= low if meta.get("low_open") else value < low)
        too_high = high is not None and (value >= high if meta.get("high_open") else value > high)
        if too_low or too_high:
            raise ConfigError(f"--{name} {value}: out of range, allowed {describe_range(meta)}")


def describe_range(meta: Any) -> str:
    low, high = meta.get("low"), meta.get("high")
    left = "(" if meta.get("low_open") else "["
    right = ")" if meta.get("high_open") else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    if low is None:
        left = "("
    if high is None:
        right = ")"
    return f"{left}{lo}, {hi}{right}"


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, values: dict[str, Any], source: str = "config") -> Any:
    """Build a config from a (possibly nested, possibly partial) dict; unknown keys are errors."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a JSON object of settings, got {type(values).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    types = field_types(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown setting {key!r}; known: {', '.join(sorted(names))}")
        expected = types[key]
        if dataclasses.is_dataclass(expected):
            value = from_dict(expected, value, source=f"{source}.{key}")
        elif typing.get_origin(expected) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as e:  # e.g. a nested group given as a scalar
        raise ConfigError(f"{source}: {e}") from None


def with_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """Apply dotted overrides ({"lr": 0.1, "model.hidden": 64}) and re-validate."""
    values = to_dict(cfg)
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"--{dotted}: unknown setting")
            node = node[p]
        if leaf not in node:
            raise ConfigError(f"--{dotted}: unknown setting")
        node[leaf] = value
    return from_dict(type(cfg), values)


def config_hash(cfg: Any, keys: Iterable[str] | None = None) -> str:
    """A short hash of the settings that change what a checkpoint means (not device/threads/amp); of `keys` alone
    when given (a run's hash covers the settings its config.json recorded, see `Run.config_hash`)."""
    values = to_dict(cfg)
    if keys is not None:
        wanted = set(keys)
        values = {k: v for k, v in values.items() if k in wanted}
    for volatile in ("device", "threads", "checkpoint_every"):
        values.pop(volatile, None)
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

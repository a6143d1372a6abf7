"""Parsing a recipe's flags and executing a run: what `cookbook run`, `run --all`, `bench` and `report` share.

Every config field of a recipe is a flag (`--lr 3e-4`, `--model.hidden 256`). User mistakes end in one
line naming the bad value and what is allowed, with exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
import typing
from pathlib import Path
from typing import Any

from torch_cookbook import recipes
from torch_cookbook.engine.config import PROFILES, verdict
from torch_cookbook.errors import CookbookError, Interrupted


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage dump) and suggests close flag names."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments"):
            bad = message.split(":", 1)[1].split()
            known = [s for a in self._actions for s in a.option_strings]
            hints = [m for b in bad for m in difflib.get_close_matches(b, known, n=1)]
            hint = f"; did you mean {hints[0]}?" if hints else f"; see `{self.prog} --help`"
            message = f"unknown option {' '.join(bad)}{hint}"
        self.exit(2, f"{self.prog}: error: {message}\n")


# ---- config fields as flags ----------------------------------------------------------------------
def add_config_flags(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """One flag per (nested) field, with its help text; defaults are suppressed so only given flags override."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name, kind = prefix + f.name, hints[f.name]
        if dataclasses.is_dataclass(kind):
            add_config_flags(parser, kind, prefix=name + ".")
            continue
        meta = f.metadata
        help_text = meta.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if meta.get("choices"):
            help_text += f" (one of: {', '.join(map(str, meta['choices']))})"
        help_text += f" [default {default}]"
        kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS, "dest": name}
        origin = typing.get_origin(kind)
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin in (list, tuple):
            (inner, *_) = typing.get_args(kind)
            kwargs.update(nargs="+", type=converter(inner), metavar=inner.__name__.upper())
        else:
            kwargs.update(type=converter(kind), metavar=kind.__name__.upper())
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        parser.add_argument(*flags, **kwargs)


_NUMBER_WORDS = {int: "an integer", float: "a number"}


def converter(kind: type) -> Any:
    """argparse `type=` for a config field: int and float fail with a one-line message, anything else is str."""
    if kind not in _NUMBER_WORDS:
        return str

    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {_NUMBER_WORDS[kind]}") from None

    return convert


def parse_run_flags(recipe: recipes.Recipe, argv: list[str]) -> tuple[Any, str, Path, bool]:
    """`cookbook run NAME [flags]` -> (validated config, profile, runs root, --print-config)."""
    parser = Parser(prog=f"cookbook run {recipe.name}", description=recipe.summary)
    parser.add_argument("name")
    parser.add_argument("--profile", default="quick", choices=PROFILES,
                        help="smoke: seconds, for tests; quick: about a minute; full: reaches the target")
    parser.add_argument("--runs-root", type=Path, default=Path("runs"), help="where run directories go")
    parser.add_argument("--config", type=Path, help="a JSON file of settings (flags given here override it)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    add_config_flags(parser, recipe.Config)
    args = vars(parser.parse_args(argv))
    profile, root, config_file, print_only = (args.pop(k) for k in ("profile", "runs_root", "config", "print_config"))
    args.pop("name")
    overrides = {**read_config_file(config_file), **args} if config_file else args
    return recipe.config(profile, overrides), profile, root, print_only


def check_run_flags(name: str, profile: str, flags: list[str]) -> None:
    """Fail (one line, exit 2) if `flags` are not valid `cookbook run NAME` flags; used by `cookbook bench`."""
    parse_run_flags(recipes.get(name), [name, "--profile", profile, *flags])


def read_config_file(path: Path) -> dict[str, Any]:
    """Settings from a JSON file, flattened to dotted keys; any problem is a one-line ConfigError."""
    from torch_cookbook.errors import ConfigError

    try:
        values = json.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not valid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of settings, got {type(values).__name__}")

    def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    return flatten(values)


def execute(recipe: recipes.Recipe, cfg: Any, profile: str, root: Path = Path("runs"),
            directory: Path | None = None) -> int:
    """Run a recipe (fresh, or resumed when `directory` is given), write its summary, print the verdict.

    Under torchrun (WORLD_SIZE > 1) every rank runs this: it joins the process group first, rank 0
    picks the run directory and tells the others, ranks > 0 print nothing (their errors included: rank 0
    reports the same one line), and every rank leaves the group at the end, whatever happened.
    """
    import os

    import torch

    from torch_cookbook.engine import distributed
    from torch_cookbook.engine.checkpoint import STOP
    from torch_cookbook.engine.config import to_dict
    from torch_cookbook.engine.repro import seed_everything, select_device, set_threads
    from torch_cookbook.engine.runs import Run, check_data, record_data, with_absolute_data

    data_fields = getattr(recipe.module, "DATA_FIELDS", {})  # config fields that name a user's file or folder
    if directory is None:
        cfg = with_absolute_data(cfg, data_fields)
    device = select_device(cfg.device)
    set_threads(cfg.threads)
    multi = distributed.launched_by_torchrun()
    quiet = multi and distributed.rank() != 0
    stdout = sys.stdout
    if quiet:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - closed in the finally below
    try:
        # Every rank checks before it joins the group (the world size is known from torchrun's environment): a bad
        # setting ends each rank with its one line, instead of one rank leaving while the other waits to join.
        if directory is not None:
            check_data(directory)  # a resumed run continues on the data it started on, or not at all
        data = record_data(cfg, data_fields) if directory is None else None  # a missing file fails here
        check_launch = getattr(recipe.module, "check_launch", None)
        if check_launch is not None:  # launch-dependent checks (world size vs batch) before anything is written
            check_launch(cfg)
        if multi:
            if device.type == "cuda":
                device = torch.device("cuda", distributed.local_rank())  # one GPU per rank
            distributed.init_from_env(device, getattr(cfg, "backend", "auto"))
        # Per-rank seeds: rank 0 uses the seed itself (a 1-process run is unchanged); recipes seed
        # their model initialisation with cfg.seed explicitly, so every rank starts from the same weights.
        seed_everything(cfg.seed + distributed.rank())
        if directory is None and multi:
            if distributed.is_main_process():
                config = json.loads(json.dumps(to_dict(cfg)))
                directory = distributed.previous_attempt(Path(root) / recipe.name, config)
                if directory is None:
                    directory = Run.create(recipe.name, cfg, profile, device, root=root, data=data).dir
                    distributed.write_elastic_marker(directory)
            directory = distributed.broadcast_object(directory)
        if directory is None:
            run = Run.create(recipe.name, cfg, profile, device, root=root, data=data)
        else:
            run = Run(directory, recipe.name, cfg, profile, device)
        where = f"{device.type}, {distributed.world_size()} processes" if multi else device.type
        print(f"{recipe.name} ({profile} profile, seed {cfg.seed}, {where}): {run.dir}", flush=True)
        STOP.install()
        try:
            metrics = recipe.run(cfg, run)
        except Interrupted as e:
            raise Interrupted(f"{e}; resume with: cookbook run --resume {run.dir}") from None
        finally:
            STOP.uninstall()
            run.close()
        summary = run.write_summary(metrics, recipe.targets)
        print_summary(summary)
        return 0
    except CookbookError as e:
        if quiet:  # rank 0 prints the one line; the other ranks exit with the same code, silently
            raise SystemExit(e.exit_code) from None
        raise
    finally:
        distributed.destroy()
        if quiet:
            sys.stdout.close()
            sys.stdout = stdout


def print_summary(summary: dict[str, Any]) -> None:
    metrics = summary["metrics"]
    width = max((len(k) for k in metrics), default=10)
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")
    for t in summary["targets"]:
        shown_verdict = verdict(t).upper() if t["met"] is not None else verdict(t)
        measured = metrics.get(t["metric"])
        shown = "-" if measured is None else f"{measured:.4g}"
        print(f"  target {t['metric']} {t['op']} {t['value']:g}: {shown_verdict} (measured {shown}, "
              f"{summary['profile']} profile)")
    print(f"  wall time {summary['wall_time_s']:.1f} s on {summary['device']}", flush=True)

"""The `cookbook` command: list, run, eval, predict, bench, report.

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
from torch_cookbook.engine.config import PROFILES, from_dict
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
            kwargs.update(nargs="+", type=_converter(inner), metavar=inner.__name__.upper())
        else:
            kwargs.update(type=_converter(kind), metavar=kind.__name__.upper())
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        parser.add_argument(*flags, **kwargs)


def _converter(kind: type) -> Any:
    if kind is int:
        def to_int(text: str) -> int:
            try:
                return int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        return to_int
    if kind is float:
        def to_float(text: str) -> float:
            try:
                return float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        return to_float
    return str


# ---- commands ------------------------------------------------------------------------------------
def cmd_list(argv: list[str]) -> int:
    parser = Parser(prog="cookbook list", description="List recipes with their seed question and target.")
    parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="torch-cookbook recipes")
    for col in ("recipe", "seed question", "target (full profile)", "last result"):
        table.add_column(col)
    for r in recipes.all_recipes():
        table.add_row(r.name, r.seed_question, "; ".join(map(str, r.targets)), _last_result(r.name))
    Console(width=160).print(table)
    return 0


def _last_result(name: str) -> str:
    bench = Path("benchmarks/results") / f"{name}.json"
    if bench.exists():
        data = json.loads(bench.read_text())
        met = all(t.get("met_all_seeds") for t in data.get("targets", []))
        return f"bench ({len(data.get('seeds', []))} seeds): {'met' if met else 'NOT met'}"
    summaries = sorted(Path("runs").glob(f"{name}/*/summary.json"))
    if not summaries:
        return "-"
    s = json.loads(summaries[-1].read_text())
    flags = [t["met"] for t in s["targets"]]
    verdict = "met" if all(flags) else "not met"
    return f"{s['profile']} run: {verdict}"


def cmd_run(argv: list[str]) -> int:
    # First pass: which recipe (or --resume / --all); second pass: that recipe's flags.
    pre = Parser(prog="cookbook run", add_help=False)
    pre.add_argument("name", nargs="?")
    pre.add_argument("--resume", type=Path)
    pre.add_argument("--all", action="store_true")
    pre.add_argument("-h", "--help", action="store_true")
    known, _ = pre.parse_known_args(argv)
    if known.all:
        from torch_cookbook.run_all import run_all

        return run_all(argv)
    if known.resume is not None:
        # A resumed run keeps its config; only where it runs may change.
        resume = Parser(prog="cookbook run --resume")
        resume.add_argument("name", nargs="?")
        resume.add_argument("--resume", type=Path, required=True)
        resume.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
        resume.add_argument("--threads", type=_converter(int))
        args = resume.parse_args(argv)
        return _resume(args.resume, args.name, device=args.device, threads=args.threads)
    if known.name is None or (known.name.startswith("-")):
        if known.help:
            print("usage: cookbook run NAME [--profile smoke|quick|full] [--seed N] [flags]  (or --resume DIR, --all)")
            print("recipes: " + ", ".join(recipes.names()))
            return 0
        pre.error("the recipe name is required; recipes: " + ", ".join(recipes.names()))
    recipe = recipes.get(known.name)
    cfg, profile, root, print_only = parse_run_flags(recipe, argv)
    if print_only:
        print(json.dumps(dataclasses.asdict(cfg), indent=2))
        return 0
    return execute(recipe, cfg, profile, root=root)


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


def _resume(directory: Path, name: str | None, device: str | None = None, threads: int | None = None) -> int:
    from torch_cookbook.engine.runs import open_run_dir

    info = open_run_dir(directory)
    if name and name != info["recipe"]:
        raise CookbookError(f"{directory} is a run of {info['recipe']!r}, not {name!r}")
    if (directory / "summary.json").exists():
        print(f"{directory} already completed; nothing to resume")
        return 0
    recipe = recipes.get(info["recipe"])
    values = dict(info["config"])
    values.update({k: v for k, v in (("device", device), ("threads", threads)) if v is not None})
    cfg = from_dict(recipe.Config, values, source=str(directory / "config.json"))
    return execute(recipe, cfg, info["profile"], directory=directory)


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
    from torch_cookbook.engine.runs import Run

    device = select_device(cfg.device)
    set_threads(cfg.threads)
    multi = distributed.launched_by_torchrun()
    quiet = multi and distributed.rank() != 0
    stdout = sys.stdout
    if quiet:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - closed in the finally below
    try:
        if multi:
            if device.type == "cuda":
                device = torch.device("cuda", distributed.local_rank())  # one GPU per rank
            distributed.init_from_env(device, getattr(cfg, "backend", "auto"))
        check_launch = getattr(recipe.module, "check_launch", None)
        if check_launch is not None:  # launch-dependent checks (world size vs batch) before anything is written
            check_launch(cfg)
        # Per-rank seeds: rank 0 uses the seed itself (a 1-process run is unchanged); recipes seed
        # their model initialisation with cfg.seed explicitly, so every rank starts from the same weights.
        seed_everything(cfg.seed + distributed.rank())
        if directory is None and multi:
            if distributed.is_main_process():
                config = json.loads(json.dumps(to_dict(cfg)))
                directory = distributed.previous_attempt(Path(root) / recipe.name, config)
                if directory is None:
                    directory = Run.create(recipe.name, cfg, profile, device, root=root).dir
                    distributed.write_elastic_marker(directory)
            directory = distributed.broadcast_object(directory)
        if directory is None:
            run = Run.create(recipe.name, cfg, profile, device, root=root)
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
        verdict = {True: "MET", False: "NOT MET", None: "not measured"}[t["met"]]
        measured = metrics.get(t["metric"])
        shown = "-" if measured is None else f"{measured:.4g}"
        print(f"  target {t['metric']} {t['op']} {t['value']:g}: {verdict} (measured {shown}, "
              f"{summary['profile']} profile)")
    print(f"  wall time {summary['wall_time_s']:.1f} s on {summary['device']}", flush=True)


def cmd_eval(argv: list[str]) -> int:
    from torch_cookbook.engine.repro import seed_everything, select_device, set_threads
    from torch_cookbook.engine.runs import Run, open_run_dir

    parser = Parser(prog="cookbook eval", description="Recompute a run's metrics from its saved checkpoints.")
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    info = open_run_dir(args.run_dir)
    recipe = recipes.get(info["recipe"])
    if not hasattr(recipe.module, "evaluate"):
        raise CookbookError(f"recipe {recipe.name!r} has no evaluate(); its metrics are in summary.json")
    cfg = from_dict(recipe.Config, info["config"], source=str(args.run_dir / "config.json"))
    device = select_device(cfg.device)
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    run = Run(args.run_dir, recipe.name, cfg, info["profile"], device)
    run.is_main = False  # evaluation must not write into the run directory
    metrics = recipe.module.evaluate(cfg, run)
    saved = {}
    if (args.run_dir / "summary.json").exists():
        saved = json.loads((args.run_dir / "summary.json").read_text())["metrics"]
    print(json.dumps({"metrics": metrics, "summary_metrics": {k: saved.get(k) for k in metrics}}, indent=2))
    return 0


def has_predict(recipe: recipes.Recipe) -> bool:
    return hasattr(recipe.module, "predict") and hasattr(recipe.module, "predict_arguments")


def cmd_predict(argv: list[str]) -> int:
    from torch_cookbook.engine.repro import select_device, set_threads
    from torch_cookbook.engine.runs import Run, open_run_dir

    pre = Parser(prog="cookbook predict", add_help=False)
    pre.add_argument("name", nargs="?")
    known, _ = pre.parse_known_args(argv)
    if not known.name or known.name.startswith("-"):
        pre.error("usage: cookbook predict NAME RUN_DIR [inputs]")
    recipe = recipes.get(known.name)
    if not has_predict(recipe):
        with_predict = [r.name for r in recipes.all_recipes() if has_predict(r)]
        raise CookbookError(f"recipe {recipe.name!r} has no predict; recipes with predict: {', '.join(with_predict)}")
    parser = Parser(prog=f"cookbook predict {recipe.name}")
    parser.add_argument("name")
    parser.add_argument("run_dir", type=Path)
    recipe.module.predict_arguments(parser)
    args = parser.parse_args(argv)
    info = open_run_dir(args.run_dir)
    if info["recipe"] != recipe.name:
        raise CookbookError(f"{args.run_dir} is a run of {info['recipe']!r}, not {recipe.name!r}")
    cfg = from_dict(recipe.Config, info["config"], source=str(args.run_dir / "config.json"))
    set_threads(cfg.threads)
    run = Run(args.run_dir, recipe.name, cfg, info["profile"], select_device(cfg.device))
    recipe.module.predict(cfg, run, args)
    return 0


def cmd_bench(argv: list[str]) -> int:
    from torch_cookbook.bench import bench_main

    return bench_main(argv)


def cmd_report(argv: list[str]) -> int:
    from torch_cookbook.report import report_main

    return report_main(argv)


COMMANDS = {"list": cmd_list, "run": cmd_run, "eval": cmd_eval, "predict": cmd_predict, "bench": cmd_bench,
            "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: cookbook {" + ",".join(COMMANDS) + "} ...\n"
              "  list                      recipes, seed questions, targets, last results\n"
              "  run NAME [flags]          train a recipe (--profile smoke|quick|full, --seed, --resume DIR, --all)\n"
              "  eval RUN_DIR              recompute metrics from a run's checkpoints\n"
              "  predict NAME RUN_DIR ...  use a trained model\n"
              "  bench [NAMES] [--seeds N] full-profile benchmarks -> benchmarks/results/*.json\n"
              "  report                    runs/ -> runs/report.html")
        return 0
    command = argv.pop(0)
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        print(f"cookbook: error: unknown command {command!r}; commands: {', '.join(COMMANDS)}{hint}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](argv)
    except CookbookError as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"cookbook: error: {message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cookbook: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # argparse's exits (errors: 2, --help: 0), as a return code for in-process callers
        return e.code if isinstance(e.code, int) else 1


if __name__ == "__main__":
    sys.exit(main())

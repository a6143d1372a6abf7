"""The `cookbook` command: list, run, eval, predict, bench, report.

The flag parsing and the run itself are in `launch.py`, shared with `run --all`, `bench` and `report`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
from pathlib import Path

from torch_cookbook import recipes
from torch_cookbook.engine.config import from_dict
from torch_cookbook.errors import CookbookError
from torch_cookbook.launch import Parser, converter, execute, parse_run_flags


# ---- commands ------------------------------------------------------------------------------------
def cmd_list(argv: list[str]) -> int:
    parser = Parser(prog="cookbook list", description="List recipes with their seed question and target.")
    parser.parse_args(argv)
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="torch-cookbook recipes")
    for col in ("recipe", "seed question", "target (full profile)", "last result"):
        table.add_column(col)
    for r in recipes.all_recipes():
        table.add_row(r.name, r.seed_question, "; ".join(map(str, r.targets)), _last_result(r.name))
    for name, needs in recipes.unavailable().items():  # recipes whose pip extra is not installed
        table.add_row(name, "-", escape(needs), "-")
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
    flags = [t["met"] for t in s["targets"] if not (t.get("across_seeds") or "for" in t)]  # those it judged
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
        resume.add_argument("--threads", type=converter(int))
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


def cmd_eval(argv: list[str]) -> int:
    from torch_cookbook.engine.repro import seed_everything, select_device, set_threads
    from torch_cookbook.engine.runs import Run, check_data, open_run_dir

    parser = Parser(prog="cookbook eval", description="Recompute a run's metrics from its saved checkpoints.")
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    info = open_run_dir(args.run_dir)
    check_data(args.run_dir)
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
    from torch_cookbook.engine.runs import Run, check_data, open_run_dir

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
    check_data(args.run_dir)
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


def version_text() -> str:
    """`cookbook --version`: the package version and the code it runs (commit, dirty, hash of the package files)."""
    from torch_cookbook import __version__
    from torch_cookbook.engine.runs import code_version

    code = code_version()
    dirty = ", dirty" if code["dirty"] else ""
    return f"torch-cookbook {__version__} (commit {code['commit']}{dirty}; src sha256 {code['src_sha256'][:12]})"


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
              "  report                    runs/ -> runs/report.html\n"
              "  --version                 the package version and the commit it runs")
        return 0
    if argv[0] in ("--version", "-V"):
        print(version_text())
        return 0
    command = argv.pop(0)
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        print(f"cookbook: error: unknown command {command!r}; commands: {', '.join(COMMANDS)}{hint}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](argv)
    except BrokenPipeError:  # `cookbook predict ... | head`: the reader stopped reading; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
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

"""`cookbook run --all`: every recipe on one profile, one progress view, a final table, then the report.

A recipe that fails does not stop the others; its error is reported at the end and the exit code is 1.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

from torch_cookbook import recipes
from torch_cookbook.engine.config import PROFILES, verdict
from torch_cookbook.errors import CookbookError


def run_all(argv: list[str]) -> int:
    from torch_cookbook.launch import Parser, execute

    parser = Parser(prog="cookbook run --all", description="Run every recipe, then write the report.")
    parser.add_argument("--all", action="store_true", required=True)
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--runs-root", type=Path, default=Path("runs"))
    parser.add_argument("--only", nargs="+", default=None, help="a subset of recipes, in this order")
    parser.add_argument("--no-report", action="store_true", help="skip writing runs/report.html")
    args = parser.parse_args(argv)
    names = args.only or recipes.names()
    for name in names:
        recipes.get(name)  # unknown names fail before any work

    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        elapsed = time.perf_counter() - started
        eta = f", eta {elapsed / i * (len(names) - i):.0f}s" if i else ""
        print(f"\n=== [{i + 1}/{len(names)}] {name} ({elapsed:.0f}s elapsed{eta}) ===", flush=True)
        t0 = time.perf_counter()
        row: dict[str, Any] = {"recipe": name, "error": None, "summary": None}
        try:
            recipe = recipes.get(name)
            cfg = recipe.config(args.profile, {"seed": args.seed, "threads": args.threads})
            execute(recipe, cfg, args.profile, root=args.runs_root)
            row["summary"] = _latest_summary(args.runs_root / name)
        except CookbookError as e:
            row["error"] = str(e).splitlines()[0]
        except Exception as e:  # keep going: report the failure at the end
            row["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
            traceback.print_exc()
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)

    _print_table(rows, args.profile, time.perf_counter() - started)
    if not args.no_report:
        from torch_cookbook.report import render

        print(f"report: {render([args.runs_root], args.runs_root / 'report.html')}")
    failed = [r for r in rows if r["error"]]
    if failed:
        print("failed: " + "; ".join(f"{r['recipe']}: {r['error']}" for r in failed))
    return 1 if failed else 0


def _latest_summary(folder: Path) -> dict[str, Any] | None:
    summaries = sorted(folder.glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(summaries[-1].read_text()) if summaries else None


def _print_table(rows: list[dict[str, Any]], profile: str, total_s: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} recipes, {profile} profile, {total_s:.0f}s "
                        f"(targets are stated for the full profile)")
    for col in ("recipe", "metric", "target", "measured", "verdict", "wall s"):
        table.add_column(col)
    for row in rows:
        if row["error"]:
            table.add_row(row["recipe"], "", "", "", f"[red]FAILED: {row['error']}", f"{row['wall_s']:.0f}")
            continue
        summary = row["summary"] or {"targets": [], "metrics": {}}
        for j, t in enumerate(summary["targets"]):
            measured = summary["metrics"].get(t["metric"])
            colour = {True: "green", False: "red", None: "yellow"}[t["met"]]
            shown = f"[{colour}]{verdict(t)}"
            table.add_row(row["recipe"] if j == 0 else "", t["metric"], f"{t['op']} {t['value']:g}",
                          "-" if measured is None else f"{measured:.4g}", shown,
                          f"{row['wall_s']:.0f}" if j == 0 else "")
    Console(width=150).print(table)

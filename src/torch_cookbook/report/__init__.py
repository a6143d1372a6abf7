"""`cookbook report`: run directories -> one static HTML page with numbers and pictures.

For each recipe the page shows the best run found (full profile before quick before smoke, newest first):
a summary-table row (seed question, key metrics, targets met or not, wall time, device) and a section with
its plots, all metrics, its config and links to the run directory and the recipe's docs page. Images are
embedded as data URIs by default so the page is one self-contained file; `--images-beside` writes them into
a folder next to the page instead (smaller, for committing).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from torch_cookbook import recipes
from torch_cookbook.engine.config import verdict

PROFILE_RANK = {"full": 3, "quick": 2, "smoke": 1}


def find_runs(paths: list[Path]) -> dict[str, Path]:
    """The best completed run per recipe among `paths` (run directories or folders containing them)."""
    candidates: list[tuple[Path, dict[str, Any]]] = []
    for path in paths:
        for summary_path in [path / "summary.json", *path.glob("*/*/summary.json"), *path.glob("*/summary.json")]:
            if summary_path.is_file():
                try:
                    candidates.append((summary_path.parent, json.loads(summary_path.read_text())))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # a damaged summary is skipped, not fatal
    best: dict[str, tuple[tuple, Path]] = {}
    for run_dir, summary in candidates:
        key = (PROFILE_RANK.get(summary.get("profile"), 0), summary_path_mtime(run_dir))
        name = summary.get("recipe")
        if name and (name not in best or key > best[name][0]):
            best[name] = (key, run_dir)
    return {name: run_dir for name, (_, run_dir) in best.items()}


def summary_path_mtime(run_dir: Path) -> float:
    return (run_dir / "summary.json").stat().st_mtime


def _image(path: Path, out_dir: Path, embed: bool, prefix: str) -> str:
    if embed:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    folder = out_dir / "report_files"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{prefix}_{path.name}"
    shutil.copyfile(path, target)
    return f"report_files/{target.name}"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def recipe_entry(name: str, run_dir: Path | None, out_dir: Path, embed: bool, docs_base: str) -> dict[str, Any]:
    try:
        recipe = recipes.get(name)
        seed_question, summary_line = recipe.seed_question, recipe.summary
        target_metrics = [t.metric for t in recipe.targets]
    except Exception:  # a run of a recipe that no longer exists still gets a section
        seed_question, summary_line, target_metrics = "", "", []
    entry: dict[str, Any] = {"name": name, "seed_question": seed_question, "summary_line": summary_line,
                             "docs": f"{docs_base}/{name}.md", "run": None}
    if run_dir is None:
        return entry
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = summary.get("metrics", {})
    key_names = list(dict.fromkeys(target_metrics + [k for k in metrics if "baseline" in k]))
    config = {}
    if (run_dir / "config.json").exists():
        config = json.loads((run_dir / "config.json").read_text()).get("config", {})
    plots = sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").is_dir() else []
    entry["run"] = {
        "dir": os.path.relpath(run_dir, out_dir),
        "profile": summary.get("profile"),
        "seed": summary.get("seed"),
        "wall_time": _fmt(summary.get("wall_time_s")),
        "device": summary.get("device", ""),
        "commit": summary.get("commit", ""),
        "targets": [{**t, "text": f"{t['metric']} {t['op']} {t['value']:g}", "measured": _fmt(metrics.get(t["metric"])),
                     "verdict": verdict(t)}
                    for t in summary.get("targets", [])],
        "key_metrics": [(k, _fmt(metrics.get(k))) for k in key_names],
        "metrics": [(k, _fmt(v)) for k, v in metrics.items()],
        "config": [(k, json.dumps(v)) for k, v in config.items()],
        "plots": [{"name": p.stem.replace("_", " "), "src": _image(p, out_dir, embed, name)} for p in plots],
    }
    entry["all_met"] = all(t["met"] is True for t in summary.get("targets", []))
    return entry


def render(paths: list[Path], out: Path, embed: bool = True, docs_base: str | None = None) -> Path:
    """Write the report for the runs found under `paths` to `out`; returns `out`."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    found = find_runs(paths)
    docs_base = docs_base or os.path.relpath(Path("docs").resolve(), out.parent.resolve())
    names = list(dict.fromkeys(recipes.names() + sorted(found)))
    entries = [recipe_entry(n, found.get(n), out.parent, embed, docs_base) for n in names]
    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html"]))
    html = env.get_template("template.html").render(
        entries=entries, generated=time.strftime("%Y-%m-%d %H:%M"), n_runs=len(found),
        n_met=sum(1 for e in entries if e.get("all_met")))
    out.write_text(html)
    return out


def report_main(argv: list[str]) -> int:
    from torch_cookbook.launch import Parser

    parser = Parser(prog="cookbook report", description="Turn run directories into one HTML page.")
    parser.add_argument("paths", nargs="*", type=Path, help="run directories or folders of runs (default: runs/)")
    parser.add_argument("--out", type=Path, default=Path("runs/report.html"), help="where to write the page")
    parser.add_argument("--images-beside", action="store_true",
                        help="write images to a folder next to the page instead of embedding them")
    parser.add_argument("--docs-base", default=None, help="URL or relative path of the docs/ folder for links")
    args = parser.parse_args(argv)
    paths = args.paths or [Path("runs")]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        parser.error(f"no such run directory or folder: {', '.join(missing)}")
    out = render(paths, args.out, embed=not args.images_beside, docs_base=args.docs_base)
    print(f"report: {out}")
    return 0

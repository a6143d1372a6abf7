"""The install: pyproject's dependencies and extras cover what the code imports, requirements.lock pins what
requirements*.txt name, and a recipe whose extra is missing says in one line which `pip install` to run.
(`benchmarks/check_install.sh` installs the package into a fresh venv; minutes, so not part of this suite.)"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

from torch_cookbook import recipes
from torch_cookbook.errors import CookbookError

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(path: Path) -> dict[str, str | None]:
    """{normalised name: pinned version or None} of a requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].split(";")[0].strip()
        if line:
            name, _, version = re.match(r"([A-Za-z0-9_.\-]+)\s*(==\s*([^\s,]+))?", line).groups()
            found[normal(name)] = version
    return found


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@functools.lru_cache
def modules_of_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # reads every installed package's file list: seconds


def import_names(distributions: list[str]) -> set[str]:
    """The top-level modules the given (installed) distributions provide."""
    wanted = {normal(re.split(r"[\s<>=!~\[;]", d)[0]) for d in distributions}
    return {module for module, dists in modules_of_distributions().items() if any(normal(d) in wanted for d in dists)}


def third_party_imports(module: str) -> set[str]:
    """Top-level third-party modules imported anywhere (functions included) by `module` and the torch_cookbook
    modules it imports, read from the source."""
    def source(name: str) -> Path | None:
        path = SRC / Path(*name.split("."))
        return next((p for p in (path / "__init__.py", path.with_suffix(".py")) if p.exists()), None)

    found, seen, todo = set(), set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or source(name) is None:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(source(name).read_text())):
            imported = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for full in imported:
                if full.startswith("torch_cookbook"):
                    todo += [".".join(full.split(".")[:k]) for k in range(2, full.count(".") + 2)]
                elif full.split(".")[0] not in sys.stdlib_module_names:
                    found.add(full.split(".")[0])
    return found


def test_missing_extra_is_one_line_naming_the_pip_install(cli, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # as if it were not installed
    code, _, err = cli("run", "dqn", "--profile", "smoke")
    assert code == 2
    assert err.strip().splitlines() == ["cookbook: error: dqn needs gymnasium: pip install 'torch-cookbook[rl]'"]
    assert not (tmp_path / "runs").exists()
    assert recipes.unavailable() == {name: f"{name} needs gymnasium: pip install 'torch-cookbook[rl]'"
                                     for name in ("dqn", "qlearning")}
    assert "dqn" not in [r.name for r in recipes.all_recipes()]
    code, out, _ = cli("list")  # the installed recipes are still listed
    assert code == 0 and "batchnorm" in out


def test_a_module_missing_at_import_names_the_extra_too(monkeypatch):
    def fails(name: str):
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)

    monkeypatch.setattr(importlib, "import_module", fails)
    missing = "skimage.filters"
    with pytest.raises(CookbookError, match=r"^unet needs scikit-image: pip install 'torch-cookbook\[vision\]'$"):
        recipes.get("unet")
    missing = "torch_cookbook.nn.nothere"  # our own module: a bug, never an install hint
    with pytest.raises(ModuleNotFoundError):
        recipes.get("unet")


def test_extras_cover_every_recipes_imports():
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    assert set(recipes.EXTRAS) == set(recipes.names())
    assert set(extras) == {"vision", "text", "rl", "series", "all"} == set(recipes.EXTRA_MODULES) | {"all"}
    assert extras["all"] == ["torch-cookbook[vision,text,rl,series]"]
    core = import_names(project["dependencies"])
    data_only = import_names(list(requirement_names(REPO / "requirements-nodeps.txt")))
    for extra, modules in recipes.EXTRA_MODULES.items():
        assert set(modules) <= import_names(extras[extra]), extra  # each checked module is installed by the extra
    for name, extra in recipes.EXTRAS.items():
        provided = core | data_only | {m for e in extra.split(",") for m in import_names(extras[e])}
        checked = {m for e in extra.split(",") for m in recipes.EXTRA_MODULES[e]}
        imports = third_party_imports(f"torch_cookbook.recipes.{name}")
        assert imports <= provided, f"{name} imports {imports - provided}, which [{extra}] does not install"
        assert imports - core - data_only <= checked, f"{name}: add {imports - core - data_only - checked}"


def test_core_dependencies_cover_the_engine_cli_and_nn():
    core = import_names(pyproject()["project"]["dependencies"])
    for module in ("cli", "launch", "run_all", "bench", "report", "engine.runs", "engine.trainer", "nn",
                   "nn.attention"):
        imports = third_party_imports(f"torch_cookbook.{module}")
        assert imports <= core, f"torch_cookbook.{module} imports {imports - core}: add to [project] dependencies"


def test_lock_pins_every_requirement_and_no_local_path():
    lock = requirement_names(REPO / "requirements.lock")
    assert all(version for version in lock.values())  # every package at an exact version
    for source in ("requirements.txt", "requirements-nodeps.txt"):
        for name, pinned in requirement_names(REPO / source).items():
            assert name in lock, f"{name} ({source}) is not in requirements.lock: run `make lock`"
            assert pinned in (None, lock[name]), f"{name}=={pinned} in {source}, {lock[name]} in the lock"
    text = (REPO / "requirements.lock").read_text()
    assert not re.search(r"file:|https?:|@|--(index|extra-index|find-links)", text)  # nothing machine-local
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[A-Za-z0-9_.\-]+==[^\s;]+( ; .+)?", line), line


def test_lock_meets_the_lower_bounds_of_pyproject():
    from packaging.requirements import Requirement

    lock = requirement_names(REPO / "requirements.lock")
    project = pyproject()["project"]
    for text in project["dependencies"] + [d for e in project["optional-dependencies"].values() for d in e]:
        requirement = Requirement(text)
        if requirement.name != "torch-cookbook":
            assert requirement.specifier.contains(lock[normal(requirement.name)]), text

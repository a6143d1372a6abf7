"""The package's layering: nn/ and data/ stand alone, recipes do not import each other, no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "torch_cookbook"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """torch_cookbook modules imported anywhere in the file (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("torch_cookbook"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from torch_cookbook.x import module`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("torch_cookbook"))
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


@pytest.mark.parametrize("layer", ["nn", "data"])
def test_nn_and_data_import_nothing_from_engine(layer):
    bad = {m: sorted(i for i in deps if i.startswith(("torch_cookbook.engine", "torch_cookbook.recipes",
                                                          "torch_cookbook.cli", "torch_cookbook.launch")))
           for m, deps in GRAPH.items() if m.startswith(f"torch_cookbook.{layer}")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_no_recipe_imports_another_recipe():
    bad = {m: sorted(i for i in deps if i.startswith("torch_cookbook.recipes.") and i != m)
           for m, deps in GRAPH.items() if m.startswith("torch_cookbook.recipes.")}
    assert {m: d for m, d in bad.items() if d} == {}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    """Package __init__ modules are left out: importing a submodule always runs its package's __init__."""
    graph = {m: {d for d in deps if MODULES[d].name != "__init__.py"} for m, deps in GRAPH.items()}
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None

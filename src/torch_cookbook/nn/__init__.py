"""Reusable modules the recipes are built from, importable on their own:

    from torch_cookbook.nn import MultiHeadAttention, UNet, gram_matrix, pgd_linf

Every name in an nn module's `__all__` is exported here. Names resolve lazily (PEP 562), so importing one does
not import every dependency (gymnasium, torchvision...).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any


def _exports() -> dict[str, str]:
    """{name: module} from each module's `__all__`, read from its source (nothing is imported here)."""
    where = {}
    for path in sorted(Path(__file__).parent.glob("[!_]*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                where.update(dict.fromkeys(ast.literal_eval(node.value), path.stem))
    return where


_WHERE = _exports()
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return __all__

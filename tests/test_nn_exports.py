"""`from torch_cookbook.nn import X` works for every public name of every nn module, and the list is complete."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types

import pytest

import torch_cookbook.nn as tc_nn

MODULES = [m.name for m in pkgutil.iter_modules(tc_nn.__path__) if not m.name.startswith("_")]


def public_names(module: types.ModuleType, source: str | None = None) -> set[str]:
    """Functions and classes the module defines, and the UPPER_CASE constants it assigns, unless named with _."""
    names = {name for name, value in vars(module).items()
             if not name.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
             and value.__module__ == module.__name__}
    tree = ast.parse(source if source is not None else inspect.getsource(module))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names.update(t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper() and not t.id.startswith("_"))
    return names


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_is_exported(module_name):
    module = importlib.import_module(f"torch_cookbook.nn.{module_name}")
    assert hasattr(module, "__all__"), f"nn/{module_name}.py has no __all__"
    assert public_names(module) <= set(module.__all__), "public but not in __all__"
    assert set(module.__all__) <= set(tc_nn.__all__), "in the module's __all__ but not exported by torch_cookbook.nn"


@pytest.mark.parametrize("name", tc_nn.__all__)
def test_every_exported_name_resolves(name):
    obj = getattr(tc_nn, name)
    module = importlib.import_module(f"torch_cookbook.nn.{tc_nn._WHERE[name]}")
    assert obj is getattr(module, name)


def test_the_completeness_check_can_fail():
    """A module with a public function missing from its __all__ is caught."""
    fake = types.ModuleType("torch_cookbook.nn.fake")
    source = "def listed(): pass\ndef forgotten(): pass\nLIMIT = 3\n__all__ = ['listed']"
    exec(source, fake.__dict__)
    assert public_names(fake, source) - set(fake.__all__) == {"forgotten", "LIMIT"}


def test_no_name_is_exported_by_two_modules():
    seen: dict[str, str] = {}
    for module_name in MODULES:
        for name in importlib.import_module(f"torch_cookbook.nn.{module_name}").__all__:
            assert name not in seen, f"{name} is in the __all__ of both nn.{seen[name]} and nn.{module_name}"
            seen[name] = module_name


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        tc_nn.Nope  # noqa: B018

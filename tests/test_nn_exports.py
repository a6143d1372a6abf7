"""`from torch_cookbook.nn import X` works for every public name of every nn module, and the list is complete."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
import typing

import pytest

import torch_cookbook.nn as tc_nn

MODULES = [m.name for m in pkgutil.iter_modules(tc_nn.__path__) if not m.name.startswith("_")]


def public_names(module: types.ModuleType) -> set[str]:
    """Functions and classes the module defines, and its UPPER_CASE constants, unless named with a leading _."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, (types.ModuleType, typing.TypeVar)):
            continue
        defined_here = (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == module.__name__
        if defined_here or (name.isupper() and not inspect.isclass(value) and not callable(value)):
            names.add(name)
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
    exec("def listed(): pass\ndef forgotten(): pass\n__all__ = ['listed']", fake.__dict__)
    assert public_names(fake) - set(fake.__all__) == {"forgotten"}


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        tc_nn.Nope  # noqa: B018

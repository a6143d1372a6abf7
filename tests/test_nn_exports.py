"""`from torch_cookbook.nn import X` works for every name the nn modules export."""

from __future__ import annotations

import importlib

import pytest

import torch_cookbook.nn as tc_nn


@pytest.mark.parametrize("name", tc_nn.__all__)
def test_every_exported_name_resolves(name):
    obj = getattr(tc_nn, name)
    module = importlib.import_module(f"torch_cookbook.nn.{tc_nn._WHERE[name]}")
    assert obj is getattr(module, name)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        tc_nn.Nope  # noqa: B018

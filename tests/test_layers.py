"""Every block in zoo.layers, found by scanning the package: its ``example()`` runs, the
output has the promised shape, and gradients reach every parameter (and the input). A
new block is tested here without a new test; a block without ``example()`` fails."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch
from torch import nn

import zoo.layers


def _layer_classes() -> list[type[nn.Module]]:
    found = []
    for info in pkgutil.iter_modules(zoo.layers.__path__, "zoo.layers."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, nn.Module) and cls.__module__ == module.__name__:
                found.append(cls)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


LAYERS = _layer_classes()


def test_the_scan_finds_the_layers():
    names = {c.__name__ for c in LAYERS}
    assert {"ConvNormAct", "SpatialPyramidPooling", "MultiHeadAttention", "TransformerBlock",
            "RecurrentStack"} <= names


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_layer_example_shapes_and_gradients(cls):
    assert hasattr(cls, "example"), f"{cls.__name__} needs an example() classmethod"
    torch.manual_seed(0)
    ex = cls.example()
    assert isinstance(ex.module, cls)
    ex.module.train()
    float_inputs = [a for a in ex.args if isinstance(a, torch.Tensor) and a.is_floating_point()]
    for a in float_inputs:
        a.requires_grad_(True)
    out = _first_tensor(ex.run())
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == tuple(ex.out_shape)
    assert torch.isfinite(out).all()
    if not out.requires_grad:  # a parameter-free, input-free block (position encodings)
        assert not list(ex.module.parameters()) and not float_inputs
        return
    # a random projection of the output, so no gradient cancels by symmetry
    (out * torch.randn_like(out)).sum().backward()
    for name, p in ex.module.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"zero gradient at {name}"
    for a in float_inputs:
        assert a.grad is not None and a.grad.abs().sum() > 0

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


OLD_PATHS = {  # names that configs and older run directories' config.yaml use
    "zoo.data.text.TextData": "zoo.data.corpora.TextData",
    "zoo.data.text.BertPretrainData": "zoo.data.bert.BertPretrainData",
    "zoo.data.text.ShuffledWordsData": "zoo.data.bert.ShuffledWordsData",
    "zoo.data.text.tokenizer_from_spec": "zoo.data.tokenizers.tokenizer_from_spec",
    "zoo.data.seq_tasks.PlantedClusterData": "zoo.data.word2vec.PlantedClusterData",
    "zoo.data.seq_tasks.ShapesCaptionData": "zoo.data.captions.ShapesCaptionData",
    "zoo.data.seq_tasks.describe_scene": "zoo.data.captions.describe_scene",
    "zoo.models.classification.linear.LinearRegression": "zoo.models.regression.linear.LinearRegression",
    "zoo.models.classification.spp.SpatialPyramidPooling": "zoo.layers.pooling.SpatialPyramidPooling",
    "zoo.models.transformer.layers.TransformerBlock": "zoo.layers.attention.TransformerBlock",
    "zoo.models.sequence.recurrent.make_recurrent": "zoo.layers.recurrent.make_recurrent",
    "zoo.models.sequence.decoding.beam_search": "zoo.layers.decoding.beam_search",
    "zoo.models.sequence.generation.sample_next": "zoo.layers.decoding.sample_next",
    "zoo.models.sequence.generation.TokenizerSlot": "zoo.data.tokenizers.TokenizerSlot",
}


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_moved_names_resolve_from_their_old_paths(old):
    import importlib

    def resolve(path):
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)

    assert resolve(old) is resolve(OLD_PATHS[old])
    if isinstance(resolve(old), type) and old.startswith("zoo.data."):
        # configs and old run directories name these: they must pass the allow-list too
        from zoo.engine.config import locate

        assert locate(old) is resolve(OLD_PATHS[old])


def test_unknown_name_of_a_split_module_is_an_attribute_error():
    import zoo.data.seq_tasks

    with pytest.raises(AttributeError):
        zoo.data.seq_tasks.NoSuchThing  # noqa: B018


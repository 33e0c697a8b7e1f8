"""Blocks shared by several model families (timm's ``layers/``): a block moves here the
moment a second model needs it, and no model keeps a private copy.

- ``conv``: convolution + norm + activation, the norm and activation injectable.
- ``pooling``: spatial pyramid pooling (SPP-net, Fast R-CNN's RoI pooling grid, PSPNet).
- ``attention``: scaled dot-product and multi-head attention, masks, sinusoidal
  positions, and a ``TransformerBlock`` whose attention and feed-forward are injectable.
- ``recurrent``: Elman RNN, LSTM and GRU cells written out, and a stack that runs them.
- ``decoding``: next-token sampling (temperature, top-k, top-p), greedy decoding and
  beam search over a model's one-step function.

Every ``nn.Module`` defined here has an ``example()`` classmethod returning a small
:class:`Example` (an instance and inputs); ``tests/test_layers.py`` finds every such
class by scanning this package and checks output shapes and that gradients reach every
parameter, so a new block is tested without a new test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class Example:
    """A small instance of a layer and inputs it accepts: ``module(*args, **kwargs)``
    returns a tensor (or a tuple whose first item is a tensor) of ``out_shape``."""

    module: nn.Module
    args: tuple[Any, ...]
    out_shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def run(self) -> Any:
        return self.module(*self.args, **self.kwargs)


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))

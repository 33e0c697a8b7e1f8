"""The evaluator contract shared by validation, ``evaluate.py`` and every metric.

``reset()``, ``update(predictions, batch)`` then ``compute() -> dict``. Results must
not depend on how the data was split into batches or over processes. To make that
exact, an evaluator keeps its running state as a list of per-batch records (or
integer counts) and does all floating-point reduction in ``compute``. In a
distributed run each process evaluates a contiguous shard of the split, in order;
``gather`` collects every process's ``state()`` in rank order and ``merge``s it,
so the concatenated records are in the same order as a single-process run.

``compute()`` returns a flat dict of metric name -> float for the headline numbers,
and may add nested tables (dicts/lists) under their own keys (``per_class``,
``confusion_matrix``); the trainer logs only the flat numbers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from zoo.registry import buildable


@buildable
class Evaluator:
    """Base class: subclasses define ``reset``, ``update``, ``compute``, and keep
    their state in attributes listed in ``state_keys`` (each a list that ``merge``
    concatenates, or a tensor/number that ``merge`` sums)."""

    state_keys: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, predictions: Any, batch: Any) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- distributed -----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        out = {}
        for k in self.state_keys:
            v = getattr(self, k)
            out[k] = _to_cpu(v)
        return out

    def merge(self, states: list[dict[str, Any]]) -> None:
        """Replace this evaluator's state by the combination of ``states`` (rank order)."""
        for k in self.state_keys:
            vals = [s[k] for s in states]
            if isinstance(vals[0], list):
                setattr(self, k, [x for v in vals for x in v])
            else:
                total = vals[0]
                for v in vals[1:]:
                    total = total + v
                setattr(self, k, total)

    def gather(self) -> None:
        """Combine the state of all processes (no-op when not distributed)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, self.state())
        self.merge(states)

    def save_plots(self, directory: str | os.PathLike) -> list[Path]:
        """PNGs beside ``evaluate.py``'s metrics.json (confusion matrix, PR curves, IoU per
        class); returns the files written. Default: none."""
        return []


def _to_cpu(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu()
    if isinstance(v, list):
        return [_to_cpu(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_to_cpu(x) for x in v)
    if isinstance(v, dict):
        return {k: _to_cpu(x) for k, x in v.items()}
    return v

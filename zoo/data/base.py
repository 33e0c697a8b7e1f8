"""The data contract: a ``DataModule`` builds each split's dataset, the collate
function and the metadata that models and evaluators read.

Data configs are ``configs/data/<name>.yaml`` with ``_target_`` pointing at a
``DataModule`` subclass. Metadata that models need at build time (``num_classes``,
``channels``, ``image_size``, ``vocab_size``...) is written in the data config so
model configs can interpolate it (``num_classes: ${data.num_classes}``); the
subclass checks that the data on disk agrees and raises ``DataError`` if not.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from zoo.errors import DataError, choices
from zoo.registry import buildable


@buildable
class DataModule:
    """Base class. Subclasses implement ``build(split)`` and fill ``self.meta``.

    Keyword arguments shared by every dataset:
        batch_size: training batch size (per process).
        eval_batch_size: validation/test batch size (defaults to ``batch_size``).
        num_workers: DataLoader worker processes. Any number keeps ``resume=`` bit-exact:
            with workers, each sample's augmentation draws from generators seeded by
            (seed, epoch, sample index) (``zoo.engine.loader``), so the draws do not
            depend on the worker count either; 0 draws from the main process's
            generators, which checkpoints save (other draws than with workers).
        persistent_workers: keep training workers alive across epochs (when
            ``num_workers > 0``).
        prefetch_factor: batches each worker loads ahead (null: torch's default, 2).
    """

    splits: tuple[str, ...] = ("train", "val", "test")
    collate_fn: Callable | None = None
    # False: training batches in dataset order (language-model streams that carry state)
    shuffle: bool = True
    # loader settings, set by __init__; declared here so the loader reads them directly
    persistent_workers: bool = True
    prefetch_factor: int | None = None

    def __init__(
        self,
        *,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        **meta: Any,
    ) -> None:
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.persistent_workers = bool(persistent_workers)
        self.prefetch_factor = None if prefetch_factor is None else int(prefetch_factor)
        # Everything else in the data config is metadata (num_classes, ...).
        self.meta: dict[str, Any] = dict(meta)
        self._cache: dict[str, Dataset] = {}

    def build(self, split: str) -> Dataset:
        raise NotImplementedError

    @classmethod
    def infer_meta(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Metadata read from the files or derived from other keys (class names and count,
        ``num_features``), given the data config as a dict; called before the model is
        built so ``${data.num_classes}`` resolves. A value the config gives is checked
        against what is found (``DataError`` if they differ). Default: nothing to add."""
        return {}

    def dataset(self, split: str) -> Dataset:
        if split not in self.splits:
            raise DataError(f"unknown split '{split}' for {type(self).__name__}; "
                            f"valid splits: {choices(self.splits)}")
        if split not in self._cache:
            self._cache[split] = self.build(split)
        return self._cache[split]


def class_meta(names: list[str], where: str, config: dict[str, Any]) -> dict[str, Any]:
    """``num_classes`` and ``class_names`` read from a dataset's files (``where`` names
    them), checked against what the config gives (``DataError`` naming both if they differ)."""
    given_names = config.get("class_names")
    if given_names is not None and list(given_names) != list(names):
        raise DataError(f"data.class_names={list(given_names)} but {where} names {list(names)}; "
                        f"leave data.class_names unset to read them from the files")
    given = config.get("num_classes")
    if given is not None and given != len(names):
        raise DataError(f"{where} has {len(names)} classes but data.num_classes={given}; "
                        f"set data.num_classes={len(names)} or leave it unset (read from "
                        f"the files)")
    return {"num_classes": len(names), "class_names": list(names)}

"""Typed batches: what a collate function hands a model, an evaluator and a task.

Each is a ``NamedTuple``, so it still unpacks like the plain tuple it replaces
(``images, labels = batch``) and moves to a device field by field. Code that reads a
batch asks for its fields by name through ``<Batch>.of(batch)``, which also accepts
the untyped pair (a list from torch's default collate, or a tuple) that older data
code and tests pass; dict batches (BERT, word2vec training windows) keep their keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import torch
from torch.utils.data import default_collate

B = TypeVar("B", bound=tuple)


def _of(cls: type[B], batch: Any) -> B:
    if isinstance(batch, cls):
        return batch
    if isinstance(batch, (tuple, list)) and len(batch) == len(cls._fields):  # type: ignore[attr-defined]
        return cls(*batch)
    raise TypeError(f"expected a {cls.__name__}{cls._fields} batch, got "  # type: ignore[attr-defined]
                    f"{type(batch).__name__}" + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else ""))


class LabelledBatch(NamedTuple):
    """Classification and regression: ``inputs`` (B, C, H, W) images or (B, F) features
    (or (B, T) token ids), ``labels`` (B,) int64 class ids or float targets."""

    inputs: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def of(cls, batch: Any) -> LabelledBatch:
        return _of(cls, batch)


class DetectionBatch(NamedTuple):
    """Detection: ``images`` a list of (3, H, W) float images in [0, 1] at their own sizes,
    ``targets`` one torchvision target dict per image (``boxes`` (N, 4) xyxy pixels,
    ``labels`` (N,) 1..K, optional ``image_id``, ``iscrowd``, ``area``, ``masks``)."""

    images: list[torch.Tensor]
    targets: list[dict[str, Any]]

    @classmethod
    def of(cls, batch: Any) -> DetectionBatch:
        return _of(cls, batch)


class SegmentationBatch(NamedTuple):
    """Semantic segmentation: ``images`` (B, C, H, W), ``masks`` (B, H, W) int64 class ids."""

    images: torch.Tensor
    masks: torch.Tensor

    @classmethod
    def of(cls, batch: Any) -> SegmentationBatch:
        return _of(cls, batch)


class TokenBatch(NamedTuple):
    """Token sequences: ``inputs`` (B, T) ids and ``targets`` (B, T') ids: the next tokens
    of a language-model window, the output sequence of a seq2seq pair (starting with
    ``<bos>``), or per-step tags (-100 where unscored)."""

    inputs: torch.Tensor
    targets: torch.Tensor

    @classmethod
    def of(cls, batch: Any) -> TokenBatch:
        return _of(cls, batch)


class CaptionBatch(NamedTuple):
    """Captioning: ``images`` (B, 3, S, S), ``captions`` (B, L) ids ``<bos> ... <eos>``, padded."""

    images: torch.Tensor
    captions: torch.Tensor

    @classmethod
    def of(cls, batch: Any) -> CaptionBatch:
        return _of(cls, batch)


class WordBatch(NamedTuple):
    """Word-embedding evaluation: ``words`` (B,) ids and their planted ``clusters`` (B,)."""

    words: torch.Tensor
    clusters: torch.Tensor

    @classmethod
    def of(cls, batch: Any) -> WordBatch:
        return _of(cls, batch)


def labels_of(batch: Any) -> torch.Tensor:
    """The (B,) labels of a classification batch: a ``LabelledBatch`` (or its pair), or a
    dict batch with a ``label`` key (sequence classification from token dicts)."""
    if isinstance(batch, Mapping):
        return batch["label"]
    return LabelledBatch.of(batch).labels


def inputs_of(batch: Any) -> Any:
    """The model input of a classification batch: ``LabelledBatch.inputs``, or a bare
    input tensor (``predict.py`` classifies images without labels)."""
    if isinstance(batch, torch.Tensor):
        return batch
    return LabelledBatch.of(batch).inputs


def detection_images(batch: Any) -> list[torch.Tensor]:
    """The images of a detection batch, or of a bare list/stack of images."""
    if isinstance(batch, DetectionBatch):
        return list(batch.images)
    if (isinstance(batch, (tuple, list)) and len(batch) == 2
            and isinstance(batch[1], (list, tuple))
            and all(isinstance(t, Mapping) for t in batch[1])):
        return list(batch[0])
    return list(batch)


# -- collate functions -------------------------------------------------------------------------
def collate_labelled(items: Sequence[tuple[Any, Any]]) -> LabelledBatch:
    """(input, label) samples -> one ``LabelledBatch`` (torch's default stacking)."""
    inputs, labels = default_collate(list(items))
    return LabelledBatch(inputs, labels)


def collate_tokens(items: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> TokenBatch:
    """Equal-length (inputs, targets) windows -> one ``TokenBatch``."""
    inputs, targets = default_collate(list(items))
    return TokenBatch(inputs, targets)

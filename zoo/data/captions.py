"""Captioning data: synthetic shapes scenes (:mod:`zoo.data.shapes`) with captions that
name their objects from left to right."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.base import DataModule
from zoo.data.batches import CaptionBatch
from zoo.data.seq_tasks import BOS, EOS, PAD, TaskVocab, pad_stack
from zoo.errors import DataError

CAPTION_WORDS = ("a", "and", "small", "large")


def describe_scene(boxes: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str],
                   image_size: int, sizes: bool = True, large: float = 0.3) -> str:
    """The caption of a shapes scene: its objects from left to right, each "a X" (with
    ``sizes``: "a small X" or "a large X", large when the box side exceeds ``large`` of
    the image), joined by "and"."""
    if len(labels) == 0:
        return ""
    order = ((boxes[:, 0] + boxes[:, 2]) / 2).argsort()
    parts = []
    for i in order.tolist():
        name = class_names[int(labels[i]) - 1]
        if sizes:
            side = float((boxes[i, 2:] - boxes[i, :2]).max()) / image_size
            name = f"{'large' if side > large else 'small'} {name}"
        parts.append(f"a {name}")
    return " and ".join(parts)


class _Captions(Dataset):
    def __init__(self, scenes: Dataset, vocab: TaskVocab, class_names: Sequence[str], size: int,
                 sizes: bool, vflip: float = 0.0) -> None:
        self.scenes, self.vocab, self.class_names, self.size = scenes, vocab, class_names, size
        self.sizes, self.vflip = sizes, vflip

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.scenes[i]
        text = describe_scene(target["boxes"], target["labels"], self.class_names, self.size,
                              self.sizes)
        if self.vflip and torch.rand(()) < self.vflip:  # the trainer seeds this generator
            image = image.flip(-2)
        return image, torch.tensor([BOS] + self.vocab.encode(text) + [EOS], dtype=torch.int64)


class ShapesCaptionData(DataModule):
    """One-to-many captioning on synthetic shapes scenes (``zoo.data.shapes``): batches
    ``(images (B, 3, H, W) in [0, 1], captions (B, T))`` where a caption is ``<bos>`` "a
    large circle and a small star" ``<eos>`` (objects left to right), padded with 0.

    ``min_visible`` is the least fraction of a shape left visible by the image border and
    the other shapes (a caption must be decidable from the picture). ``describe_sizes``
    adds "small"/"large" before each shape. ``vflip`` is the probability of flipping a
    training image upside down (the caption is unchanged). ``vocab_size`` must equal
    4 specials + the caption words + the class names (checked; unused words stay in the
    vocabulary so both settings share ids).
    """

    def __init__(self, *, num_classes: int = 3, image_size: int = 64, num_train: int = 4000,
                 num_val: int = 300, num_test: int = 300, max_objects: int = 2,
                 min_size: float = 0.3, max_size: float = 0.6, min_visible: float = 0.8,
                 describe_sizes: bool = False, vflip: float = 0.5, seed: int = 0,
                 vocab_size: int | None = None, **kw: Any) -> None:
        from zoo.data.shapes import SHAPE_NAMES, ShapesDataset

        super().__init__(num_classes=num_classes, image_size=image_size, num_train=num_train,
                         num_val=num_val, num_test=num_test, max_objects=max_objects,
                         min_size=min_size, max_size=max_size, min_visible=min_visible,
                         describe_sizes=describe_sizes, vflip=vflip,
                         seed=seed, vocab_size=vocab_size, **kw)
        if not 0 < float(min_visible) <= 1:
            raise DataError(f"data.min_visible must be in (0, 1], got {min_visible}")
        if not 0 <= float(vflip) <= 1:
            raise DataError(f"data.vflip is a probability in [0, 1], got {vflip}")
        self.describe_sizes, self.vflip = bool(describe_sizes), float(vflip)
        self.class_names = list(SHAPE_NAMES[:num_classes])
        self.vocab = TaskVocab(list(CAPTION_WORDS) + self.class_names, words=True)
        if vocab_size is not None and int(vocab_size) != len(self.vocab):
            raise DataError(f"data.vocab_size={vocab_size} but captions of {num_classes} shape "
                            f"classes use {len(self.vocab)} tokens; set data.vocab_size={len(self.vocab)}")
        self.image_size = int(image_size)
        self.lengths = {"train": num_train, "val": num_val, "test": num_test}
        self.render = {"image_size": image_size, "classes": self.class_names, "max_objects": max_objects,
                           "min_size": min_size, "max_size": max_size, "min_visible": min_visible,
                           "empty_prob": 0.0}
        self.seed = int(seed)
        self._scenes = ShapesDataset
        self.collate_fn = self._collate
        self.meta.update(vocab=self.vocab.itos, class_names=self.class_names)

    def build(self, split: str) -> Dataset:
        # vertical flips only: they keep each shape's name and the left-to-right order
        scenes = self._scenes(self.lengths[split], split=split, seed=self.seed, cache=True,
                              **self.render)
        return _Captions(scenes, self.vocab, self.class_names, self.image_size, self.describe_sizes,
                         self.vflip if split == "train" else 0.0)

    @staticmethod
    def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> CaptionBatch:
        return CaptionBatch(torch.stack([im for im, _ in items]), pad_stack([c for _, c in items], PAD))

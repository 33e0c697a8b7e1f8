"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, no download."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.vision import ImageClassificationData
from zoo.errors import DataError


def stratified_split(labels: torch.Tensor, fractions: tuple[float, float, float],
                     seed: int) -> dict[str, torch.Tensor]:
    """Indices of a fixed train/val/test partition that keeps each class's share in
    every split (per class: shuffle with ``seed``, then cut by ``fractions``)."""
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
    for c in labels.unique(sorted=True).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = round(fractions[1] * len(idx))
        n_test = round(fractions[2] * len(idx))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    # Sorted so each split keeps the dataset's original order: batches mix classes.
    return {k: torch.cat(v).sort().values for k, v in parts.items()}


class DigitsData(ImageClassificationData):
    """The UCI optical digits (Alpaydin & Kaynak, 1998) as shipped in scikit-learn:
    (1, 8, 8) float images in [0, 1], a fixed stratified 60/20/20 split.

    ``image_size`` resizes the 8x8 images (bilinear) for networks that need larger
    inputs (LeNet-5: 32); ``augment_shift`` moves training images by up to that many
    pixels.
    """

    def __init__(self, *, image_size: int = 8, seed: int = 0, val_fraction: float = 0.2,
                 test_fraction: float = 0.2, augment_shift: int = 0, **kwargs: Any) -> None:
        super().__init__(image_size=image_size, seed=seed, val_fraction=val_fraction,
                         test_fraction=test_fraction, augment_shift=augment_shift, **kwargs)
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise DataError(f"data.val_fraction={val_fraction} and data.test_fraction="
                            f"{test_fraction} must be positive and sum to less than 1")
        self.meta["class_names"] = [str(i) for i in range(10)]
        self._check_meta(10, 1, "scikit-learn's digits")

    def _load(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        from sklearn.datasets import load_digits

        raw = load_digits()
        # Pixel values are counts 0..16 of a 4x4 block; /16 maps them to [0, 1].
        images = torch.tensor(raw.images, dtype=torch.float32).div_(16.0)[:, None]  # (N, 1, 8, 8)
        labels = torch.tensor(raw.target, dtype=torch.int64)
        fractions = (1 - self.meta["val_fraction"] - self.meta["test_fraction"],
                     self.meta["val_fraction"], self.meta["test_fraction"])
        return images, labels, stratified_split(labels, fractions, int(self.meta["seed"]))

    def build(self, split: str) -> Dataset:
        images, labels, splits = self._load()
        idx = splits[split]
        return self._dataset(split, images[idx], labels[idx])

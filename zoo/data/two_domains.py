"""Two image domains with a known pairing: the same digit drawn in two styles.

The content is one of scikit-learn's 8x8 handwritten digits (a fixed stratified split
of the 1,797, so validation digits were never seen in training), resized to 16-24 px
and placed at a seeded position in a 32x32 frame. Each content is rendered

- in style **A**: a thin white stroke on black;
- in style **B**: a thicker yellow stroke on a blue background with diagonal stripes.

Both renderings are deterministic functions of the content, so the ideal A->B map
exists and is a function: translation is scored against the ground truth.

Every item holds two *independent* contents, one shown in A and one in B: a model
trained on ``a`` and ``b`` never sees the same digit in both styles (unpaired
training). The paired renderings (``a_in_b``: a's content in style B, ``b_in_a``: b's in
style A) ride along in the batch for scoring only. Images are (3, 32, 32) floats in
[-1, 1] (the range of a tanh generator).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.data.base import DataModule
from zoo.data.digits import stratified_split
from zoo.errors import DataError

B_FOREGROUND = (1.0, 0.85, 0.2)     # yellow stroke
B_BACKGROUND = (0.1, 0.3, 0.55)     # blue, modulated by the stripes
STRIPE_PERIOD = 6.0                 # pixels between diagonal stripes


class DomainBatch(NamedTuple):
    """Two-domain images: ``a`` (B, 3, H, W) in style A and ``b`` (B, 3, H, W) in style B
    of independent contents; ``a_in_b`` is a's content in style B and ``b_in_a`` b's in
    style A (the ground truth, for scoring only); ``labels_a``/``labels_b`` (B,) the
    digits; ``index`` (B,) the items' positions in their split (fixed noise per item)."""

    a: torch.Tensor
    b: torch.Tensor
    a_in_b: torch.Tensor
    b_in_a: torch.Tensor
    labels_a: torch.Tensor
    labels_b: torch.Tensor
    index: torch.Tensor

    @classmethod
    def of(cls, batch: Any) -> DomainBatch:
        if isinstance(batch, cls):
            return batch
        if isinstance(batch, (tuple, list)) and len(batch) == len(cls._fields):
            return cls(*batch)
        raise TypeError(f"expected a DomainBatch{cls._fields}, got {type(batch).__name__}")


def collate_domains(items: list[tuple]) -> DomainBatch:
    return DomainBatch(*(torch.stack([it[k] for it in items]) for k in range(len(DomainBatch._fields))))


# -- rendering ---------------------------------------------------------------------------------
def _stripes(size: int) -> torch.Tensor:
    """(size, size) in [0.6, 1]: diagonal stripes of the B background."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    return 0.6 + 0.4 * (0.5 + 0.5 * torch.sin(2 * math.pi * (xx + yy) / STRIPE_PERIOD))


def render_a(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) soft digit mask in [0, 1] -> (3, H, W) style A in [-1, 1]: thin, white on black."""
    stroke = ((mask - 0.5) * 4).clamp(0, 1)
    return (stroke * 2 - 1).expand(3, *mask.shape).clone()


def render_b(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) soft digit mask in [0, 1] -> (3, H, W) style B in [-1, 1]: a thicker stroke
    (the soft mask cut at a lower level than A's), yellow on a striped blue background."""
    stroke = ((mask - 0.15) * 4).clamp(0, 1)
    bg = torch.tensor(B_BACKGROUND)[:, None, None] * _stripes(mask.shape[-1])
    fg = torch.tensor(B_FOREGROUND)[:, None, None]
    image = bg * (1 - stroke) + fg * stroke
    return image * 2 - 1


def place_digits(digits: torch.Tensor, size: int, g: torch.Generator, min_px: int,
                 max_px: int) -> torch.Tensor:
    """(N, 8, 8) digits in [0, 1] -> (N, size, size) masks: each resized to a seeded side
    in [min_px, max_px] (bilinear) and placed at a seeded position."""
    n = len(digits)
    sides = torch.randint(min_px, max_px + 1, (n,), generator=g)
    corner = (torch.rand(n, 2, generator=g) * (size - sides + 1)[:, None]).long()  # (N, 2) y, x
    out = torch.zeros(n, size, size)
    for side in sides.unique().tolist():
        idx = torch.nonzero(sides == side).flatten()
        small = F.interpolate(digits[idx, None], size=(side, side), mode="bilinear",
                              align_corners=False)[:, 0].clamp(0, 1)
        for j, i in enumerate(idx.tolist()):
            oy, ox = corner[i].tolist()
            out[i, oy:oy + side, ox:ox + side] = small[j]
    return out


class TwoDomainDataset(Dataset):
    """Items ``(a, b, a_in_b, b_in_a, label_a, label_b, index)`` from two stacks of
    digit masks (N, H, W) in [0, 1] (the contents shown in A and in B)."""

    def __init__(self, masks_a: torch.Tensor, masks_b: torch.Tensor, labels_a: torch.Tensor,
                 labels_b: torch.Tensor) -> None:
        self.masks_a, self.masks_b = masks_a, masks_b
        self.labels_a, self.labels_b = labels_a, labels_b

    def __len__(self) -> int:
        return len(self.masks_a)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        ma, mb = self.masks_a[i].float() / 255, self.masks_b[i].float() / 255
        return (render_a(ma), render_b(mb), render_b(ma), render_a(mb),
                self.labels_a[i], self.labels_b[i], torch.tensor(i, dtype=torch.int64))


class TwoDomainsData(DataModule):
    """Digits in two styles with a known pairing (see the module docstring).

    ``num_train``/``num_val``/``num_test`` items per split, each with two independent
    contents drawn from that split's digits; ``min_px``/``max_px`` bound the digit's side;
    ``seed`` fixes the digit split and every placement (independent of the run's seed).
    """

    collate_fn = staticmethod(collate_domains)

    def __init__(self, *, num_train: int = 4000, num_val: int = 512, num_test: int = 512,
                 image_size: int = 32, min_px: int = 16, max_px: int = 24, seed: int = 0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("channels", 3)
        kwargs.setdefault("num_classes", 10)
        kwargs.setdefault("class_names", [str(i) for i in range(10)])
        super().__init__(**kwargs)
        if not 8 <= min_px <= max_px <= image_size:
            raise DataError(f"data.min_px={min_px} and data.max_px={max_px} must satisfy "
                            f"8 <= min_px <= max_px <= image_size={image_size}")
        for k, n in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if n < 1:
                raise DataError(f"data.{k} must be >= 1, got {n}")
        self.sizes = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        self.image_size, self.min_px, self.max_px, self.seed = int(image_size), int(min_px), int(max_px), int(seed)
        self.meta.update(image_size=self.image_size, domains=["A", "B"],
                         domain_names={"A": "thin white on black", "B": "thick yellow on striped blue"})

    def _digits(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        from sklearn.datasets import load_digits

        raw = load_digits()
        images = torch.tensor(raw.images, dtype=torch.float32).div_(16.0)  # (1797, 8, 8)
        labels = torch.tensor(raw.target, dtype=torch.int64)
        return images, labels, stratified_split(labels, (0.6, 0.2, 0.2), self.seed)

    def build(self, split: str) -> Dataset:
        digits, labels, parts = self._digits()
        pool = parts[split]
        n = self.sizes[split]
        g = torch.Generator().manual_seed(self.seed * 1000 + ("train", "val", "test").index(split))
        picks = pool[torch.randint(0, len(pool), (2, n), generator=g)]  # (2, n): contents in A, in B
        masks = place_digits(digits[picks.flatten()], self.image_size, g, self.min_px, self.max_px)
        masks = (masks * 255).round().to(torch.uint8).view(2, n, self.image_size, self.image_size)
        return TwoDomainDataset(masks[0], masks[1], labels[picks[0]], labels[picks[1]])

    def domain_images(self, split: str, domain: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image of ``split`` in ``domain`` ("A" or "B") with its digit:
        ((N, 3, H, W) in [-1, 1], (N,) int64), both contents of each item (2N images)."""
        ds = self.dataset(split)
        assert isinstance(ds, TwoDomainDataset)
        render = render_a if domain == "A" else render_b
        masks = torch.cat([ds.masks_a, ds.masks_b]).float() / 255
        images = torch.stack([render(m) for m in masks])
        return images, torch.cat([ds.labels_a, ds.labels_b])

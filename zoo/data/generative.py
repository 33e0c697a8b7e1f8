"""Data for generative models, all procedural and seeded (no download).

``Mixture2D``: points from a mixture of K isotropic Gaussians (8 on a ring, 25 on a
grid); the item is ``(point (2,), mode index)``. The metadata carries the centres and
sigma so the generative task scores modes covered and sample quality.

``ShapeImages``: one shape (circle, square, triangle, cross) per (3, S, S) image on a
black background, in a random bright colour, position and size; the label is the shape.
``object_masks(split)`` gives each image's shape mask, to measure how a model treats
small structures against large ones.

``SceneText``: two objects side by side, each a (colour, shape) pair, described in
words ("red circle left of blue square" or, the same scene, "blue square right of red
circle"); items are ``(image, token ids (T,), attributes (4,))`` with attributes
``(left colour, left shape, right colour, right shape)``.

Item ``i`` of split ``s`` depends only on ``(seed, s, i)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset, TensorDataset, default_collate

from zoo.data.base import DataModule
from zoo.data.batches import collate_labelled
from zoo.errors import DataError, choices

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _generator(seed: int, split: str) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1000 + _SPLIT_IDS[split] * 7919 + 17)


# -- 2-D mixtures ------------------------------------------------------------------------------
def mixture_centers(layout: str, *, modes: int = 8, radius: float = 2.0,
                    spacing: float = 2.0) -> torch.Tensor:
    """(K, 2) centres: ``ring`` (``modes`` points on a circle of ``radius``) or ``grid``
    (a ``sqrt(modes)`` square grid, ``spacing`` apart, centred at the origin)."""
    if layout == "ring":
        angle = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
        return (radius * torch.stack([angle.cos(), angle.sin()], 1)).float()
    if layout == "grid":
        side = math.isqrt(modes)
        if side * side != modes:
            raise DataError(f"data.modes={modes} must be a square number for layout=grid")
        axis = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
        return torch.cartesian_prod(axis, axis)
    raise DataError(f"data.layout={layout} is not one of {choices(['ring', 'grid'])}")


class Mixture2D(DataModule):
    """Equal-weight mixture of isotropic Gaussians (std ``sigma``) at ``mixture_centers``."""

    def __init__(self, *, layout: str = "ring", modes: int = 8, sigma: float = 0.05,
                 radius: float = 2.0, spacing: float = 2.0, num_train: int = 20000,
                 num_val: int = 2500, num_test: int = 2500, seed: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        if sigma <= 0:
            raise DataError(f"data.sigma={sigma} must be positive")
        self.centers = mixture_centers(layout, modes=modes, radius=radius, spacing=spacing)
        self.sigma, self.seed = float(sigma), int(seed)
        self.sizes = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        self.meta.update(kind="points", layout=layout, modes=len(self.centers), sigma=self.sigma,
                         centers=self.centers.tolist(), num_classes=len(self.centers))

    def build(self, split: str) -> Dataset:
        g = _generator(self.seed, split)
        n = self.sizes[split]
        mode = torch.randint(0, len(self.centers), (n,), generator=g)
        x = self.centers[mode] + self.sigma * torch.randn(n, 2, generator=g)
        return TensorDataset(x, mode)

    collate_fn = staticmethod(collate_labelled)


# -- shape rendering ---------------------------------------------------------------------------
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {"red": (0.95, 0.15, 0.1), "green": (0.1, 0.85, 0.2), "blue": (0.15, 0.3, 1.0)}


def shape_mask(kind: int, size: int, cx: torch.Tensor, cy: torch.Tensor,
               s: torch.Tensor, height: int | None = None) -> torch.Tensor:
    """(N, H, W) bool masks of shape ``kind`` (index into SHAPES) of diameter ``s`` (N,)
    pixels centred at (cx, cy) (N,) on a ``height`` x ``size`` canvas."""
    h = size if height is None else height
    ys = torch.arange(h, dtype=torch.float32)[None, :, None] + 0.5
    xs = torch.arange(size, dtype=torch.float32)[None, None, :] + 0.5
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    r = s[:, None, None] / 2
    if kind == 0:
        return dx * dx + dy * dy <= r * r
    if kind == 1:
        return (dx.abs() <= r * 0.85) & (dy.abs() <= r * 0.85)
    if kind == 2:  # apex up: half-width grows from 0 at the top to r at the bottom
        return (dy.abs() <= r) & (dx.abs() <= (dy + r) / 2)
    arm = r / 3
    return ((dx.abs() <= arm) & (dy.abs() <= r)) | ((dy.abs() <= arm) & (dx.abs() <= r))


class _Tensors(Dataset):
    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[i] for t in self.tensors)


class ShapeImages(DataModule):
    """One shape per image: (3, image_size, image_size) floats in [0, 1], label = shape."""

    def __init__(self, *, image_size: int = 32, min_size: float = 0.25, max_size: float = 0.7,
                 num_train: int = 4000, num_val: int = 500, num_test: int = 500, seed: int = 0,
                 **kw: Any) -> None:
        super().__init__(**kw)
        if not 0 < min_size <= max_size <= 1:
            raise DataError(f"data.min_size={min_size} and data.max_size={max_size} must satisfy "
                            f"0 < min_size <= max_size <= 1")
        self.image_size, self.min_size, self.max_size = int(image_size), float(min_size), float(max_size)
        self.seed = int(seed)
        self.sizes = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        self.meta.update(kind="images", domain="shapes", channels=3, image_size=self.image_size,
                         num_classes=len(SHAPES), class_names=list(SHAPES))
        self._rendered: dict[str, tuple[torch.Tensor, ...]] = {}

    def render(self, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images (N, 3, S, S), labels (N,), masks (N, S, S) bool) of ``split``."""
        if split not in self._rendered:
            g = _generator(self.seed, split)
            n, S = self.sizes[split], self.image_size
            labels = torch.randint(0, len(SHAPES), (n,), generator=g)
            s = S * (self.min_size + (self.max_size - self.min_size) * torch.rand(n, generator=g))
            cx = S / 2 + (S - s) / 2 * (2 * torch.rand(n, generator=g) - 1) * 0.8
            cy = S / 2 + (S - s) / 2 * (2 * torch.rand(n, generator=g) - 1) * 0.8
            colour = 0.35 + 0.65 * torch.rand(n, 3, generator=g)
            masks = torch.zeros(n, S, S, dtype=torch.bool)
            for k in range(len(SHAPES)):
                idx = (labels == k).nonzero().flatten()
                if len(idx):
                    masks[idx] = shape_mask(k, S, cx[idx], cy[idx], s[idx])
            images = masks[:, None].float() * colour[:, :, None, None]
            self._rendered[split] = (images, labels, masks)
        return self._rendered[split]  # type: ignore[return-value]

    def object_masks(self, split: str) -> torch.Tensor:
        return self.render(split)[2]

    def build(self, split: str) -> Dataset:
        images, labels, _ = self.render(split)
        return _Tensors(images, labels)

    collate_fn = staticmethod(collate_labelled)


# -- scenes described in words -----------------------------------------------------------------
class SceneTextBatch(NamedTuple):
    """``images`` (B, 3, H, W) in [0, 1], ``tokens`` (B, T) word ids of the description,
    ``attributes`` (B, 4) (left colour, left shape, right colour, right shape)."""

    images: torch.Tensor
    tokens: torch.Tensor
    attributes: torch.Tensor


def collate_scene_text(items: list[tuple[torch.Tensor, ...]]) -> SceneTextBatch:
    return SceneTextBatch(*default_collate(items))


SCENE_COLOURS = tuple(COLOURS)
SCENE_SHAPES = SHAPES[:3]
SCENE_WORDS = ("<pad>", *SCENE_COLOURS, *SCENE_SHAPES, "left", "right", "of")
DESCRIPTION_LENGTH = 6


def describe(attributes: torch.Tensor | list[int], flipped: bool = False) -> str:
    """The words of a scene: "red circle left of blue square" (``flipped``: the same
    scene as "blue square right of red circle")."""
    cl, sl, cr, sr = (int(a) for a in attributes)
    left = f"{SCENE_COLOURS[cl]} {SCENE_SHAPES[sl]}"
    right = f"{SCENE_COLOURS[cr]} {SCENE_SHAPES[sr]}"
    return f"{right} right of {left}" if flipped else f"{left} left of {right}"


def encode_description(text: str) -> torch.Tensor:
    """(T,) word ids; raises DataError naming the unknown word or a malformed phrase."""
    words = text.lower().replace(",", " ").split()
    for w in words:
        if w not in SCENE_WORDS[1:]:
            raise DataError(f"unknown word '{w}' in the description; known words: "
                            f"{choices(SCENE_WORDS[1:])}")
    if len(words) != DESCRIPTION_LENGTH or words[3] != "of" or words[2] not in ("left", "right"):
        raise DataError(f"a description reads 'COLOUR SHAPE left|right of COLOUR SHAPE' "
                        f"(e.g. 'red circle left of blue square'), got '{text}'")
    return torch.tensor([SCENE_WORDS.index(w) for w in words], dtype=torch.int64)


def parse_description(text: str) -> torch.Tensor:
    """(4,) attributes (left colour, left shape, right colour, right shape) of a description."""
    ids = encode_description(text).tolist()
    words = [SCENE_WORDS[i] for i in ids]
    a = [SCENE_COLOURS.index(words[0]) if words[0] in SCENE_COLOURS else -1,
         SCENE_SHAPES.index(words[1]) if words[1] in SCENE_SHAPES else -1,
         SCENE_COLOURS.index(words[4]) if words[4] in SCENE_COLOURS else -1,
         SCENE_SHAPES.index(words[5]) if words[5] in SCENE_SHAPES else -1]
    if min(a) < 0:
        raise DataError(f"a description reads 'COLOUR SHAPE left|right of COLOUR SHAPE' with "
                        f"colours {choices(SCENE_COLOURS)} and shapes {choices(SCENE_SHAPES)}, "
                        f"got '{text}'")
    if words[2] == "right":  # "X right of Y": Y is on the left
        a = [a[2], a[3], a[0], a[1]]
    return torch.tensor(a, dtype=torch.int64)


class SceneText(DataModule):
    """Two coloured shapes side by side and their description (see the module docstring)."""

    def __init__(self, *, image_size: int = 32, num_train: int = 6000, num_val: int = 500,
                 num_test: int = 500, seed: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        self.image_size, self.seed = int(image_size), int(seed)
        self.sizes = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        self.meta.update(kind="images", domain="scene_text", channels=3, image_size=self.image_size,
                         vocab=list(SCENE_WORDS), vocab_size=len(SCENE_WORDS),
                         text_length=DESCRIPTION_LENGTH,
                         attribute_sizes=[len(SCENE_COLOURS), len(SCENE_SHAPES)] * 2)
        self._rendered: dict[str, tuple[torch.Tensor, ...]] = {}

    def render(self, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if split not in self._rendered:
            g = _generator(self.seed, split)
            n, S = self.sizes[split], self.image_size
            attrs = torch.stack([torch.randint(0, 3, (n,), generator=g) for _ in range(4)], 1)
            flipped = torch.rand(n, generator=g) < 0.5
            s = S * (0.34 + 0.08 * torch.rand(n, 2, generator=g))
            cx = torch.tensor([S * 0.25, S * 0.75]).expand(n, 2) + (torch.rand(n, 2, generator=g) - 0.5) * S * 0.08
            cy = S / 2 + (torch.rand(n, 2, generator=g) - 0.5) * S * 0.3
            palette = torch.tensor(list(COLOURS.values()))
            images = torch.zeros(n, 3, S, S)
            for side in range(2):
                colour, kind = attrs[:, 2 * side], attrs[:, 2 * side + 1]
                for k in range(len(SCENE_SHAPES)):
                    idx = (kind == k).nonzero().flatten()
                    if len(idx):
                        m = shape_mask(k, S, cx[idx, side], cy[idx, side], s[idx, side])
                        images[idx] = torch.where(m[:, None], palette[colour[idx]][:, :, None, None],
                                                  images[idx])
            tokens = torch.stack([encode_description(describe(a, bool(f)))
                                  for a, f in zip(attrs.tolist(), flipped.tolist())])
            self._rendered[split] = (images, tokens, attrs)
        return self._rendered[split]  # type: ignore[return-value]

    def build(self, split: str) -> Dataset:
        return _Tensors(*self.render(split))

    collate_fn = staticmethod(collate_scene_text)

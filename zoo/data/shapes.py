"""Synthetic shapes scenes: a seeded, procedural stand-in for COCO that needs no download.

Each image holds zero to ``max_objects`` shapes of ``K`` classes (circle, square,
triangle, star, cross, ...) on a cluttered background, with per-object colour and
texture, rotation, truncation at the image border and partial occlusion. Object
diameters are drawn log-uniformly between ``min_size`` and ``max_size`` times the
image side, so a split spans small, medium and large objects relative to the image
(at 640 px that is COCO's small < 32 px, medium and large > 96 px).

Every sample carries boxes, labels, per-object instance masks and a semantic mask,
so detection, instance and semantic segmentation models share one generator. Boxes
are the tight boxes of the *visible* part of each object, as in COCO. An object is
annotated only while at least ``min_visible`` of its pixels remain visible (new
objects that would hide more of an earlier one are re-drawn elsewhere), so nothing
unannotated that looks like an object is left in an image.

Scene ``i`` of split ``s`` depends only on ``(seed, s, i)``: splits are disjoint and
reproducible however the data is iterated. ``python -m zoo.data.shapes export OUT``
writes the splits as JPEGs plus COCO ``instances_<split>.json`` files (boxes and RLE
masks) that ``data=coco data.root=OUT data.train_split=train data.val_split=val``
or any COCO tool reads.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.base import DataModule
from zoo.data.detection import build_detection_transforms, collate_detection
from zoo.errors import DataError, choices

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "diamond")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


@dataclass
class Scene:
    """One rendered scene. ``instance_map`` holds 0 for background and ``i + 1`` on the
    visible pixels of object ``i``; the visible masks therefore never overlap."""

    image: np.ndarray         # (H, W, 3) uint8
    boxes: np.ndarray         # (N, 4) float32 xyxy pixels, tight around the visible mask
    labels: np.ndarray        # (N,) int64 in 1..K
    areas: np.ndarray         # (N,) float32 visible-pixel areas (COCO's ``area`` is the mask's)
    instance_map: np.ndarray | None  # (H, W) uint8; None once dropped to save memory

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) uint8 binary instance masks."""
        n = len(self.labels)
        return (self.instance_map[None] == np.arange(1, n + 1, dtype=np.uint8)[:, None, None]).astype(
            np.uint8)

    @property
    def semantic(self) -> np.ndarray:
        """(H, W) int64 class map, 0 for background."""
        lut = np.concatenate([[0], self.labels]).astype(np.int64)
        return lut[self.instance_map]



# -- shape masks ---------------------------------------------------------------------------
def _convex_polygon(u: np.ndarray, v: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Points (u, v) inside the counter-clockwise convex polygon ``verts`` (M, 2)."""
    inside = np.ones(u.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(verts, np.roll(verts, -1, axis=0)):
        inside &= (x1 - x0) * (v - y0) - (y1 - y0) * (u - x0) >= 0
    return inside


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    ang = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(ang), radius * np.sin(ang)], 1)


def shape_mask(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of shape ``name`` in local coordinates scaled so the shape spans about [-1, 1]."""
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if name == "triangle":
        return _convex_polygon(u, v, _regular(3, 1.0, np.pi / 2))
    if name == "diamond":
        return np.abs(u) / 0.6 + np.abs(v) <= 1.0
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.3)
    if name == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(u) <= 0.95) & (np.abs(v) <= 0.3))
    if name == "star":
        # A five-pointed star is its inner pentagon plus five convex tip triangles.
        outer = _regular(5, 1.0, np.pi / 2)
        inner = _regular(5, 0.42, np.pi / 2 + np.pi / 5)
        m = _convex_polygon(u, v, inner)
        for k in range(5):
            m |= _convex_polygon(u, v, np.stack([inner[k - 1], outer[k], inner[k]]))
        return m
    raise ValueError(f"unknown shape '{name}'")


# -- rendering -----------------------------------------------------------------------------
def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, 3)


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 background: a colour gradient, noise and low-contrast clutter
    (thin lines, blurred blobs) that looks like nothing in the class list."""
    c0, c1 = (_colour(rng) * 0.8 + 0.1).astype(np.float32), (_colour(rng) * 0.8 + 0.1).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    t = ((xx * np.cos(ang) + yy * np.sin(ang)) / size + 1) / 2  # roughly [0, 1]
    img = c0 + (c1 - c0) * t[..., None]
    for _ in range(rng.integers(2, 7)):  # clutter lines: distance to a random line < width
        a, off = rng.uniform(0, np.pi), rng.uniform(0, size)
        d = np.abs(xx * np.cos(a) + yy * np.sin(a) - off * (np.cos(a) + np.sin(a)) / 1.4)
        on = d < rng.uniform(0.5, 1.5)
        img[on] = img[on] * 0.6 + (_colour(rng) * 0.4).astype(np.float32)
    for _ in range(rng.integers(0, 4)):  # soft blobs, drawn within 3 sigma of their centre
        cy, cx, s = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0.05, 0.2) * size
        y0, y1 = max(int(cy - 3 * s), 0), min(int(cy + 3 * s) + 1, size)
        x0, x1 = max(int(cx - 3 * s), 0), min(int(cx + 3 * s) + 1, size)
        if y1 <= y0 or x1 <= x0:
            continue
        g = np.exp(-((yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2)
                   / (2 * s * s))[..., None] * 0.35
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - g) + _colour(rng).astype(np.float32) * g
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.01, 0.05))
    return img


def _texture(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, base: np.ndarray) -> np.ndarray:
    """(h, w, 3) fill of one object: solid, stripes, checks or speckle around ``base``."""
    kind = rng.integers(0, 4)
    if kind == 0:
        return np.broadcast_to(base, u.shape + (3,))
    other = np.clip(base + rng.uniform(-0.35, 0.35, 3), 0, 1)
    if kind == 1:
        a, f = rng.uniform(0, np.pi), rng.uniform(2, 5)
        s = np.sin((u * np.cos(a) + v * np.sin(a)) * f * np.pi) > 0
    elif kind == 2:
        f = rng.uniform(2, 4)
        s = (np.floor(u * f) + np.floor(v * f)) % 2 == 0
    else:
        s = rng.random(u.shape) < 0.3
    return np.where(s[..., None], base, other)


def render_scene(rng: np.random.Generator, *, image_size: int = 128,
                 classes: Sequence[str] = SHAPE_NAMES[:5], max_objects: int = 6,
                 min_size: float = 0.08, max_size: float = 0.5, empty_prob: float = 0.05,
                 min_visible: float = 0.5, max_tries: int = 8) -> Scene:
    """Render one scene from ``rng``. Sizes are object diameters as a fraction of the side."""
    size = image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    img = _background(rng, size, yy, xx)
    inst = np.zeros((size, size), dtype=np.uint8)
    full_area: list[int] = []
    labels: list[int] = []
    n_obj = 0 if rng.random() < empty_prob else int(rng.integers(1, max_objects + 1))
    for _ in range(n_obj):
        for _try in range(max_tries):
            cls = int(rng.integers(0, len(classes)))
            diam = size * math.exp(rng.uniform(math.log(min_size), math.log(max_size)))
            r = diam / 2
            # Centres may sit slightly outside the frame: truncated objects, as in real photos.
            cx, cy = rng.uniform(-0.1 * r, size + 0.1 * r), rng.uniform(-0.1 * r, size + 0.1 * r)
            x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, size)
            y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, size)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            th = rng.uniform(0, 2 * np.pi) if classes[cls] != "square" else rng.uniform(-0.4, 0.4)
            aspect = rng.uniform(0.8, 1.25)
            dx, dy = (xx[y0:y1, x0:x1] - cx) / r, (yy[y0:y1, x0:x1] - cy) / r
            u = (dx * np.cos(th) + dy * np.sin(th)) * aspect
            v = (-dx * np.sin(th) + dy * np.cos(th)) / aspect
            m = shape_mask(classes[cls], u, v)
            area_full = math.pi * r * r  # in-frame fraction is judged against the whole shape
            if m.sum() < min_visible * shape_area_fraction(classes[cls]) * area_full:
                continue  # too much of it is outside the frame
            under = inst[y0:y1, x0:x1][m]
            if len(labels):
                lost = np.bincount(under, minlength=len(labels) + 1)[1:]
                remaining = np.bincount(inst.ravel(), minlength=len(labels) + 1)[1:] - lost
                if np.any(remaining < min_visible * np.asarray(full_area)):
                    continue  # would hide too much of an earlier object
            base = _colour(rng)
            region = img[y0:y1, x0:x1]
            bg_mean = region[m].mean(0)
            if np.abs(base - bg_mean).sum() < 0.45:  # keep the object visible against its background
                base = np.where(bg_mean > 0.5, bg_mean - 0.45, bg_mean + 0.45).clip(0, 1)
            tex = _texture(rng, u, v, base)
            region[m] = tex[m] * (1 - rng.uniform(0, 0.15)) + rng.normal(0, 0.02, (int(m.sum()), 3))
            inst[y0:y1, x0:x1][m] = len(labels) + 1
            full_area.append(int(m.sum()))
            labels.append(cls + 1)
            break
    # Boxes are tight around what remains visible after occlusion.
    boxes = np.zeros((len(labels), 4), dtype=np.float32)
    for i in range(len(labels)):
        ys, xs = np.nonzero(inst == i + 1)
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    image = (img.clip(0, 1) * 255 + 0.5).astype(np.uint8)
    areas = np.bincount(inst.ravel(), minlength=len(labels) + 1)[1:len(labels) + 1]
    return Scene(image, boxes, np.asarray(labels, dtype=np.int64), areas.astype(np.float32), inst)


_AREA_FRACTION: dict[str, float] = {}


def shape_area_fraction(name: str) -> float:
    """Area of shape ``name`` as a fraction of its unit circle (measured once on a grid)."""
    if name not in _AREA_FRACTION:
        g = (np.arange(200) + 0.5) / 100 - 1
        u, v = np.meshgrid(g, g)
        inside = u * u + v * v <= 1
        _AREA_FRACTION[name] = float((shape_mask(name, u, v) & inside).sum() / inside.sum())
    return _AREA_FRACTION[name]


# -- dataset -------------------------------------------------------------------------------
class ShapesDataset(Dataset):
    """``(image, target)`` pairs: image (3, H, W) float in [0, 1]; target in torchvision's
    detection form (``boxes``, ``labels``, ``image_id``, ``area``, ``iscrowd``) plus
    ``masks`` (N, H, W) uint8 and ``semantic`` (H, W) int64 when ``with_masks``."""

    def __init__(self, length: int, *, split: str = "train", seed: int = 0,
                 with_masks: bool = False, transforms: Any = None, cache: bool = False,
                 **render: Any) -> None:
        self.length = int(length)
        # Rendering costs a few ms per scene; a cached scene costs ~49 kB at 128 px (65 kB
        # with masks).
        self.cache: dict[int, Scene] | None = {} if cache else None
        self.split_id = _SPLIT_IDS[split]
        self.seed = int(seed)
        self.with_masks = with_masks
        self.transforms = transforms
        self.render = render

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> Scene:
        if not 0 <= index < self.length:
            raise IndexError(index)
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        rng = np.random.default_rng([self.seed, self.split_id, index])
        scene = render_scene(rng, **self.render)
        if self.cache is not None:
            if not self.with_masks:  # a quarter of a cached scene's memory
                scene.instance_map = None
            self.cache[index] = scene
        return scene

    def target(self, scene: Scene, index: int) -> dict[str, torch.Tensor]:
        n = len(scene.labels)
        t: dict[str, Any] = {
            "boxes": torch.from_numpy(scene.boxes).reshape(n, 4),
            "labels": torch.from_numpy(scene.labels),
            "image_id": index,
            "area": torch.from_numpy(scene.areas),
            "iscrowd": torch.zeros(n, dtype=torch.int64),
        }
        if self.with_masks:
            t["masks"] = torch.from_numpy(scene.masks)
            t["semantic"] = torch.from_numpy(scene.semantic)
        return t

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        scene = self.scene(index)
        image = torch.from_numpy(scene.image).permute(2, 0, 1).contiguous()  # (3, H, W) uint8
        target = self.target(scene, index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        if image.dtype == torch.uint8:
            image = image.float() / 255
        return image, target

    def box_sizes(self, limit: int | None = None) -> torch.Tensor:
        """(M, 2) box widths and heights as fractions of the image side, for anchor fitting."""
        n = self.length if limit is None else min(limit, self.length)
        size = self.render.get("image_size", 128)
        wh = []
        for i in range(n):
            b = self.scene(i).boxes  # renders (and caches) the scenes training will use
            wh.append(b[:, 2:] - b[:, :2])
        return torch.from_numpy(np.concatenate(wh) / size) if wh else torch.zeros(0, 2)


class ShapesData(DataModule):
    """Synthetic shapes scenes (see the module docstring) as a detection / segmentation
    DataModule. Batches are ``(list of (3, H, W) images, list of target dicts)``."""

    def __init__(self, *, num_classes: int = 5, image_size: int = 128, num_train: int = 4000,
                 num_val: int = 500, num_test: int = 500, max_objects: int = 6,
                 min_size: float = 0.08, max_size: float = 0.5, empty_prob: float = 0.05,
                 seed: int = 0, with_masks: bool = False, hflip: float = 0.5, vflip: float = 0.5,
                 rot90: float = 0.5, color: float = 0.0, cache: bool = True,
                 class_names: Sequence[str] | None = None, **kwargs: Any) -> None:
        names = list(class_names) if class_names else list(SHAPE_NAMES[:num_classes])
        unknown = [n for n in names if n not in SHAPE_NAMES]
        if unknown or len(names) != num_classes or not 1 <= num_classes <= len(SHAPE_NAMES):
            raise DataError(f"shapes data: num_classes={num_classes} with class_names={names} is "
                            f"not a valid choice; use 1..{len(SHAPE_NAMES)} names from "
                            f"{choices(SHAPE_NAMES)}")
        super().__init__(num_classes=num_classes, image_size=image_size, num_train=num_train,
                         num_val=num_val, num_test=num_test, max_objects=max_objects,
                         min_size=min_size, max_size=max_size, empty_prob=empty_prob, seed=seed,
                         with_masks=with_masks, hflip=hflip, vflip=vflip, rot90=rot90, color=color,
                         cache=cache, **kwargs)
        self.meta["class_names"] = names
        self.render = dict(image_size=image_size, classes=names, max_objects=max_objects,
                           min_size=min_size, max_size=max_size, empty_prob=empty_prob)
        self.lengths = {"train": num_train, "val": num_val, "test": num_test}
        self.seed = seed
        self.with_masks = with_masks
        self.augment = dict(hflip=hflip, vflip=vflip, rot90=rot90, color=color)
        self.cache = cache
        self.collate_fn = collate_detection

    def build(self, split: str) -> ShapesDataset:
        # The generator varies colour, size, rotation and position per object; flips and
        # quarter turns of the whole scene multiply the distinct layouts by eight (the
        # classes do not depend on orientation), which a few thousand scenes need: without
        # them YOLOv2 reached mAP@0.5 0.94 on training scenes and 0.74 on validation ones.
        tf = build_detection_transforms(split == "train", **self.augment)
        return ShapesDataset(self.lengths[split], split=split, seed=self.seed,
                             with_masks=self.with_masks, transforms=tf, cache=self.cache,
                             **self.render)


# -- export --------------------------------------------------------------------------------
def export_coco(data: ShapesData, out: str | Path, splits: Sequence[str] = ("train", "val")) -> None:
    """Write ``out/<split>/<id>.jpg`` and ``out/annotations/instances_<split>.json``
    (boxes ``[x, y, w, h]``, visible areas, RLE masks; category ids 1..K)."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    out = Path(out)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    cats = [{"id": i + 1, "name": n, "supercategory": "shape"}
            for i, n in enumerate(data.meta["class_names"])]
    for split in splits:
        ds = ShapesDataset(data.lengths[split], split=split, seed=data.seed, **data.render)
        (out / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(len(ds)):
            sc = ds.scene(i)
            name = f"{i:06d}.jpg"
            Image.fromarray(sc.image).save(out / split / name, quality=95, subsampling=0)
            h, w = sc.image.shape[:2]
            images.append({"id": i, "file_name": name, "width": w, "height": h})
            masks = sc.masks
            for j in range(len(sc.labels)):
                x0, y0, x1, y1 = (float(c) for c in sc.boxes[j])
                rle = mask_utils.encode(np.asfortranarray(masks[j]))
                rle["counts"] = rle["counts"].decode("ascii")
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(sc.labels[j]),
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(sc.areas[j]),
                             "iscrowd": 0, "segmentation": rle})
        with open(out / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Export the synthetic shapes splits in COCO format.")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="write JPEGs and COCO instances_<split>.json files")
    e.add_argument("out")
    e.add_argument("--splits", nargs="+", default=["train", "val"], choices=list(_SPLIT_IDS))
    e.add_argument("--num-train", type=int, default=4000)
    e.add_argument("--num-val", type=int, default=500)
    e.add_argument("--num-test", type=int, default=500)
    e.add_argument("--image-size", type=int, default=128)
    e.add_argument("--num-classes", type=int, default=5)
    e.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    data = ShapesData(num_classes=a.num_classes, image_size=a.image_size, num_train=a.num_train,
                      num_val=a.num_val, num_test=a.num_test, seed=a.seed)
    export_coco(data, a.out, a.splits)
    print(f"wrote {', '.join(a.splits)} to {a.out}")


if __name__ == "__main__":
    main()

"""Tiny on-disk datasets the segmentation tests write into tmp folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from zoo.data.segmentation import voc_palette


def palette_png(path: Path, labels: np.ndarray) -> None:
    im = Image.fromarray(labels.astype(np.uint8))   # putpalette makes it a "P" image
    im.putpalette(voc_palette().flatten().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def fake_voc(root: Path) -> dict[str, np.ndarray]:
    masks = {}
    for k, name in enumerate(["2007_000001", "2007_000002", "2007_000003"]):
        lab = np.zeros((20, 30), dtype=np.uint8)
        lab[4:12, 6:20] = 15 if k else 1              # person / aeroplane
        lab[3, 5:21] = 255                            # VOC's object border
        lab[12, 5:21] = 255
        masks[name] = lab
        palette_png(root / "SegmentationClass" / f"{name}.png", lab)
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 30, 3), 40 * k, dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_000001\n2007_000002\n")
    (sets / "val.txt").write_text("2007_000003\n")
    return masks


def mask_folder(root: Path, sizes: dict[str, int] | None = None) -> None:
    """``root/images/<split>/aK.png`` + ``root/masks/<split>/aK.png`` (a class-2 box)."""
    for split, n in (sizes or {"train": 2, "val": 1}).items():
        for i in range(n):
            lab = np.zeros((8, 10), dtype=np.uint8)
            lab[2:5, 3:7] = 2
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(root / "images" / split / f"a{i}.png")
            (root / "masks" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(lab).save(root / "masks" / split / f"a{i}.png")

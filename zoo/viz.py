"""Pictures of predictions: labelled boxes, mask overlays, image grids, and the one PNG
writer (metric plots are drawn by :mod:`zoo.metrics.plots`).

Images are (3, H, W) float tensors in [0, 1] in and out, the form ``log_images``
returns and TensorBoard expects; drawing goes through torchvision's uint8 utilities.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import torch


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct, saturated RGB colours (golden-ratio hues: stable for a given index)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 1.0)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float in [0, 1] (or uint8, or 1-channel) -> (3, H, W) uint8 on the CPU."""
    image = image.detach().cpu()
    if image.ndim == 2:
        image = image[None]
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    if image.dtype != torch.uint8:
        image = (image.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return image


def draw_boxes(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor | None = None,
               scores: torch.Tensor | None = None, class_names: Sequence[str] | None = None,
               color: tuple[int, int, int] | None = None, width: int = 1,
               font_size: int | None = None) -> torch.Tensor:
    """Draw xyxy ``boxes`` on ``image``, captioned ``name score``. Labels index
    ``class_names`` from 1 (0 is background); colours follow the label unless ``color``
    is given. Returns a new (3, H, W) float image in [0, 1]."""
    from torchvision.utils import draw_bounding_boxes

    img = to_uint8(image)
    boxes = boxes.detach().cpu().reshape(-1, 4).float()
    if len(boxes) == 0:
        return img.float() / 255
    captions = None
    colours: list | None = None
    if labels is not None:
        labels = labels.detach().cpu().long()
        names = [(class_names[int(c) - 1] if class_names and 0 < int(c) <= len(class_names)
                  else str(int(c))) for c in labels]
        if scores is not None:
            names = [f"{n} {float(s):.2f}" for n, s in zip(names, scores.detach().cpu())]
        captions = names
        pal = palette(int(labels.max()) + 1)
        colours = [pal[int(c)] for c in labels]
    if color is not None:
        colours = [color] * len(boxes)
    out = draw_bounding_boxes(img, boxes, labels=captions, colors=colours, width=width,
                              font_size=font_size)
    return out.float() / 255


def overlay_masks(image: torch.Tensor, masks: torch.Tensor, alpha: float = 0.5,
                  colors: Sequence[tuple[int, int, int]] | None = None) -> torch.Tensor:
    """Overlay (N, H, W) boolean masks, or an (H, W) integer class map (0 = background),
    on ``image``. Returns a new (3, H, W) float image in [0, 1]."""
    from torchvision.utils import draw_segmentation_masks

    img = to_uint8(image)
    masks = masks.detach().cpu()
    if masks.ndim == 2:  # class map -> one mask per class present
        ids = [int(c) for c in masks.unique() if c != 0]
        pal = colors or palette(max(ids, default=0) + 1)
        colours = [tuple(pal[c]) for c in ids]
        masks = torch.stack([masks == c for c in ids]) if ids else masks.new_zeros((0,) + masks.shape)
    else:
        colours = list(colors or palette(len(masks)))[:len(masks)]
    if len(masks) == 0:
        return img.float() / 255
    out = draw_segmentation_masks(img, masks.bool(), alpha=alpha, colors=colours)
    return out.float() / 255


def grid(images: Sequence[torch.Tensor], nrow: int = 4, padding: int = 2) -> torch.Tensor:
    """Tile images (resized to the first one's size) into one (3, H, W) float image."""
    import torch.nn.functional as F
    from torchvision.utils import make_grid

    h, w = images[0].shape[-2:]
    tiles = [to_uint8(im).float() / 255 for im in images]
    tiles = [t if t.shape[-2:] == (h, w) else
             F.interpolate(t[None], size=(h, w), mode="bilinear", align_corners=False)[0]
             for t in tiles]
    return make_grid(tiles, nrow=nrow, padding=padding)


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write a (3, H, W) float image in [0, 1] as a PNG, creating parent folders."""
    from torchvision.io import write_png

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(to_uint8(image), str(path))
    return path

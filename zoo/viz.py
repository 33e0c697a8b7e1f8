"""Pictures of predictions: labelled boxes, mask overlays, image grids, and the one PNG
writer (metric plots are drawn by :mod:`zoo.metrics.plots`).

Images are (3, H, W) float tensors in [0, 1] in and out, the form a task's ``images``
returns and TensorBoard expects; boxes and masks go through torchvision's uint8
utilities, text through PIL's bundled font.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where tensors are drawn: saving a matplotlib figure needs none
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
    import torch

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
               font_size: int = 11) -> torch.Tensor:
    """Draw xyxy ``boxes`` on ``image``, captioned ``name score`` on a label filled with the
    box's colour (readable on any background). Labels index ``class_names`` from 1 (0 is
    background); colours follow the label unless ``color`` is given. Returns a new
    (3, H, W) float image in [0, 1]."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw
    from torchvision.utils import draw_bounding_boxes

    img = to_uint8(image)
    boxes = boxes.detach().cpu().reshape(-1, 4).float()
    if len(boxes) == 0:
        return img.float() / 255
    captions: list[str] | None = None
    colours: list = [color or WHITE] * len(boxes)
    if labels is not None:
        labels = labels.detach().cpu().long()
        names = [(class_names[int(c) - 1] if class_names and 0 < int(c) <= len(class_names)
                  else str(int(c))) for c in labels]
        if scores is not None:
            names = [f"{n} {float(s):.2f}" for n, s in zip(names, scores.detach().cpu())]
        captions = names
        if color is None:
            pal = palette(int(labels.max()) + 1)
            colours = [pal[int(c)] for c in labels]
    out = draw_bounding_boxes(img, boxes, colors=colours, width=width)
    if not captions:
        return out.float() / 255
    picture = Image.fromarray(out.permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(picture)
    f = font(font_size)
    h_img, w_img = picture.height, picture.width
    for (x0, y0, _, _), text, colour in zip(boxes.tolist(), captions, colours):
        w = int(f.getlength(text)) + 4
        h = font_size + 3
        x0 = max(0, min(x0, w_img - w))  # keep the whole label inside the picture
        top = y0 - h if y0 - h >= 0 else min(y0, h_img - h)  # above the box, else inside it
        draw.rectangle((x0, top, x0 + w, top + h), fill=colour)
        dark = sum(colour) > 380  # black text on light labels, white on dark ones
        draw.text((x0 + 2, top + 1), text, fill=(0, 0, 0) if dark else WHITE, font=f)
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).float() / 255


def overlay_masks(image: torch.Tensor, masks: torch.Tensor, alpha: float = 0.5,
                  colors: Sequence[tuple[int, int, int]] | None = None) -> torch.Tensor:
    """Overlay (N, H, W) boolean masks, or an (H, W) integer class map (0 = background),
    on ``image``. Returns a new (3, H, W) float image in [0, 1]."""
    import torch
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


# -- text on pictures ------------------------------------------------------------------------------
WHITE = (255, 255, 255)
GREEN = (60, 210, 60)
RED = (240, 60, 60)
GREY = (170, 170, 170)


def font(size: int = 11) -> Any:
    """PIL's bundled font at ``size`` pixels (no font file needed)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def fit_text(text: str, width: int, size: int = 11) -> str:
    """``text`` cut (ending in "..") so that it is at most ``width`` pixels wide."""
    f = font(size)
    if f.getlength(text) <= width:
        return text
    while text and f.getlength(text + "..") > width:
        text = text[:-1]
    return text + ".."


def text_block(lines: Sequence[tuple[str, tuple[int, int, int]]], width: int, size: int = 11,
               pad: int = 2, background: tuple[int, int, int] = (0, 0, 0)) -> torch.Tensor:
    """A (3, H, width) float image holding ``lines`` of (text, colour), each cut to fit."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    line_h = size + 3
    image = Image.new("RGB", (width, pad * 2 + line_h * max(len(lines), 1)), background)
    draw = ImageDraw.Draw(image)
    f = font(size)
    for i, (text, colour) in enumerate(lines):
        draw.text((pad, pad + i * line_h), fit_text(text, width - 2 * pad, size), fill=colour, font=f)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0


def legend(items: Sequence[tuple[str, tuple[int, int, int]]], width: int, size: int = 11,
           background: tuple[int, int, int] = (0, 0, 0)) -> torch.Tensor:
    """A one-line (3, H, width) key: a colour swatch then its text, for each item."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    f = font(size)
    h = size + 6
    image = Image.new("RGB", (width, h), background)
    draw = ImageDraw.Draw(image)
    x = 3
    for text, colour in items:
        draw.rectangle((x, 3, x + size - 2, h - 4), outline=colour, width=2)
        x += size + 2
        draw.text((x, 2), text, fill=colour, font=f)
        x += int(f.getlength(text)) + 10
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0


def vstack(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack (3, h_i, w_i) images top to bottom, right-padded with black to the widest."""
    import torch

    w = max(im.shape[-1] for im in images)
    rows = [torch.nn.functional.pad(to_uint8(im).float() / 255, (0, w - im.shape[-1])) for im in images]
    return torch.cat(rows, dim=1)


def hstack(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Put (3, h_i, w_i) images side by side, bottom-padded with black to the tallest."""
    import torch

    h = max(im.shape[-2] for im in images)
    cols = [torch.nn.functional.pad(to_uint8(im).float() / 255, (0, 0, 0, h - im.shape[-2])) for im in images]
    return torch.cat(cols, dim=2)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a matplotlib ``Figure`` (drawn on the Agg canvas: no display, no global
    backend) as a PNG, creating its folder; every plot of the zoo goes through here."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def figure_image(fig: Any) -> torch.Tensor:
    """A matplotlib ``Figure`` as a (3, H, W) float image in [0, 1] (for TensorBoard)."""
    import numpy as np
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # (H, W, 4) uint8
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).float() / 255.0

"""Tensor transforms for image classification data held in memory.

They work on one (C, H, W) float image at a time. The training augmentations are
torchvision's ``transforms.v2`` (pad-and-crop for small translations, horizontal flips);
they draw their randomness from torch's global generator, which the trainer seeds and
checkpoints, so a resumed run sees the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def to_float_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1]; float images pass through unchanged."""
    if image.dtype == torch.uint8:
        return image.float().div_(255.0)
    return image.float()


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) -> (C, size, size), bilinear with antialiasing when shrinking."""
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    shrink = size < max(image.shape[-2:])
    out = F.interpolate(image[None], size=(size, size), mode="bilinear",
                        align_corners=False, antialias=shrink)
    return out[0]


def classification_augment(size: tuple[int, int], shift: int = 0, hflip: bool = False
                           ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The training augmentation of (C, H, W) images of ``size``, or None for none.

    ``shift``: translate by up to that many pixels each way, filling with zeros (pad by
    ``shift``, then a random crop back to ``size``: digits and MNIST have a black
    background, so zero fill adds no edge artefact). ``hflip``: mirror left-right with
    probability 0.5 (natural photos only, never digits).
    """
    from torchvision.transforms import v2

    steps: list[Callable] = []
    if shift > 0:
        steps.append(v2.RandomCrop(size, padding=int(shift), fill=0))
    if hflip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    return v2.Compose(steps) if steps else None

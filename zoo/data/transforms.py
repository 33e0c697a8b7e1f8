"""Small tensor transforms for image classification data held in memory.

They work on one (C, H, W) float image at a time and draw their randomness from
torch's global generator, which the trainer seeds and checkpoints, so a resumed run
sees the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

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


def random_shift(image: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Translate by up to ``max_shift`` pixels each way, filling with zeros.

    Equivalent to the usual "pad then random crop" augmentation; digits and MNIST
    have a black background, so zero fill adds no edge artefact.
    """
    if max_shift <= 0:
        return image
    h, w = image.shape[-2:]
    padded = F.pad(image, (max_shift, max_shift, max_shift, max_shift))
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2,)).tolist()
    return padded[..., dy:dy + h, dx:dx + w]


def random_hflip(image: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirror left-right with probability ``p`` (natural photos only, never digits)."""
    if torch.rand(()) < p:
        return image.flip(-1)
    return image

"""The classification augmentations (torchvision transforms v2) equal the hand-written
pad-and-crop shift and coin-flip mirror they replaced, draw for draw under one seed, so
default training results do not change."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo.data.vision import ImageTensorDataset


def _reference(image: torch.Tensor, shift: int, hflip: bool) -> torch.Tensor:
    """Zero-pad by ``shift``, take a window at a uniformly drawn (dy, dx), then mirror
    when a uniform draw is below 0.5; the same draws from torch's global generator."""
    if shift > 0:
        h, w = image.shape[-2:]
        padded = F.pad(image, (shift, shift, shift, shift))
        dy, dx = torch.randint(0, 2 * shift + 1, (2,)).tolist()
        image = padded[..., dy:dy + h, dx:dx + w]
    if hflip and torch.rand(()) < 0.5:
        image = image.flip(-1)
    return image


@pytest.mark.parametrize("shift,hflip,size", [(1, False, None), (4, True, None), (2, True, 12),
                                              (0, True, None)])
def test_augmentation_equals_reference_draw_for_draw(shift, hflip, size):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 8, 10), dtype=torch.uint8, generator=g)
    ds = ImageTensorDataset(images, torch.arange(5), image_size=size, shift=shift, hflip=hflip)
    plain = ImageTensorDataset(images, torch.arange(5), image_size=size)
    moved = 0
    for seed in range(60):
        i = seed % 5
        torch.manual_seed(seed)
        got = ds[i][0]
        after = torch.rand(4)
        torch.manual_seed(seed)
        want = _reference(plain[i][0], shift, hflip)
        assert torch.equal(got, want), seed
        assert torch.equal(after, torch.rand(4))  # the same number of draws
        moved += not torch.equal(got, plain[i][0])
    assert moved > 15  # the augmentation does something


def test_no_augmentation_outside_training_settings():
    images = torch.rand(2, 1, 8, 8)
    ds = ImageTensorDataset(images, torch.zeros(2))
    assert ds.augment is None and torch.equal(ds[1][0], images[1])

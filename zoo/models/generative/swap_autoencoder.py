"""The shared-encoder, two-decoder autoencoder of "face swap" (the notes' third route to
a latent representation), on the two-domain digits instead of two people's faces.

One encoder E maps images of either domain to a spatial code; decoder D_A learns to
rebuild A images from it and D_B to rebuild B images. Each is trained only to
reconstruct its own domain, from a randomly shifted and scaled copy of the input (the
warp of the original face-swap code: E must encode the content, not copy pixels). To
swap, an A image goes through E and then the *other* decoder: D_B(E(a)) should show
a's content in style B. Nothing in the loss asks for that; it works to the extent that
E codes both domains alike, which ``translation_error`` measures against the pairing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.models.generative.two_domain_nets import TwoDomainModel, check_size


def conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True))


class SwapEncoder(nn.Module):
    """(B, C, S, S) -> (B, code, S/4, S/4): two stride-2 conv blocks and a 1x1 bottleneck."""

    def __init__(self, channels: int, width: int, code: int) -> None:
        super().__init__()
        self.net = nn.Sequential(conv_block(channels, width, 2), conv_block(width, width * 2, 2),
                                 conv_block(width * 2, width * 2, 1), nn.Conv2d(width * 2, code, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SwapDecoder(nn.Module):
    """(B, code, S/4, S/4) -> (B, C, S, S) in [-1, 1]: two 2x up-samplings (nearest + conv)."""

    def __init__(self, channels: int, width: int, code: int) -> None:
        super().__init__()
        self.net = nn.Sequential(conv_block(code, width * 2, 1), nn.Upsample(scale_factor=2),
                                 conv_block(width * 2, width, 1), nn.Upsample(scale_factor=2),
                                 conv_block(width, width, 1), nn.Conv2d(width, channels, 3, 1, 1),
                                 nn.Tanh())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def random_warp(x: torch.Tensor, shift: float, scale: float) -> torch.Tensor:
    """Each image shifted by up to ``shift`` (a fraction of the side) and scaled by up to
    1 +- ``scale`` (bilinear, border padded); draws from torch's global generator."""
    n = len(x)
    s = 1 + (torch.rand(n, device=x.device) * 2 - 1) * scale
    t = (torch.rand(n, 2, device=x.device) * 2 - 1) * 2 * shift
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


class SwapAutoencoder(TwoDomainModel):
    """Shared encoder, one decoder per domain (see the module docstring). Grouped strategy,
    one optimizer over everything."""

    directions = ("a2b", "b2a")

    def __init__(self, *, channels: int = 3, image_size: int = 32, width: int = 32, code: int = 16,
                 warp_shift: float = 0.06, warp_scale: float = 0.1) -> None:
        super().__init__()
        check_size(image_size)
        self.E = SwapEncoder(channels, width, code)
        self.D_A = SwapDecoder(channels, width, code)
        self.D_B = SwapDecoder(channels, width, code)
        self.warp_shift, self.warp_scale = float(warp_shift), float(warp_scale)

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        x = self.batch(batch)
        wa = random_warp(x.a, self.warp_shift, self.warp_scale)
        wb = random_warp(x.b, self.warp_shift, self.warp_scale)
        return {"loss_recon_a": F.l1_loss(self.D_A(self.E(wa)).float(), x.a.float()),
                "loss_recon_b": F.l1_loss(self.D_B(self.E(wb)).float(), x.b.float())}

    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, torch.Tensor]:
        x = self.batch(batch)
        ha, hb = self.E(x.a), self.E(x.b)
        a_to_b, b_to_a = self.D_B(ha), self.D_A(hb)
        return {"a_to_b": a_to_b, "b_to_a": b_to_a, "a_recon": self.D_A(ha),
                "a_cycle": self.D_A(self.E(a_to_b)), "b_cycle": self.D_B(self.E(b_to_a))}

    @torch.no_grad()
    def transform(self, images: torch.Tensor, direction: str, route: str = "encoder") -> torch.Tensor:
        self._check_direction(direction)
        return (self.D_B if direction == "a2b" else self.D_A)(self.E(images))

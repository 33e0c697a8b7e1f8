"""DCGAN (Radford et al. 2016): strided transposed convolutions up, strided convolutions
down, BatchNorm in both (not on G's output nor D's input), ReLU in G and LeakyReLU(0.2)
in D, tanh output, N(0, 0.02) initialisation; trained with Adam(2e-4, betas (0.5, 0.999))
(its config). For 32x32 images: 1 -> 4 -> 8 -> 16 -> 32."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import UserError
from zoo.models.generative.base import AdversarialModel, bce_logits, dcgan_init


def dcgan_generator(in_dim: int, channels: int, width: int) -> nn.Sequential:
    """(B, in_dim) -> (B, channels, 32, 32) in [-1, 1]."""
    return nn.Sequential(
        nn.Unflatten(1, (in_dim, 1, 1)),
        nn.ConvTranspose2d(in_dim, width * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(width * 4), nn.ReLU(True),
        nn.ConvTranspose2d(width * 4, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.ReLU(True),
        nn.ConvTranspose2d(width * 2, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
        nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh())


def dcgan_encoder(channels: int, width: int) -> nn.Sequential:
    """(B, channels, 32, 32) -> (B, width * 4, 4, 4) features (D's body, a VAE's encoder)."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(width * 2, width * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 4), nn.LeakyReLU(0.2, True))


def check_size(image_size: int) -> None:
    if int(image_size) != 32:
        raise UserError(f"the convolutional generative models draw 32x32 images; set "
                        f"data.image_size=32 (got {image_size})")


class DCGAN(AdversarialModel):
    """Deep convolutional GAN for (channels, 32, 32) images; ``width`` = ngf = ndf."""

    def __init__(self, *, channels: int = 1, image_size: int = 32, latent_dim: int = 64,
                 width: int = 32, d_steps: int = 1) -> None:
        super().__init__(latent_dim=latent_dim, image=True, d_steps=d_steps)
        check_size(image_size)
        self.G = dcgan_generator(latent_dim, channels, width)
        self.D = nn.Sequential(dcgan_encoder(channels, width), nn.Conv2d(width * 4, 1, 4, 1, 0),
                               nn.Flatten(0))
        dcgan_init(self)

    def decode(self, z: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.G(z)

    def d_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        real = self.to_net(batch[0])
        with torch.no_grad():
            fake = self.G(self.latent(len(real)))
        return {"loss_d_real": bce_logits(self.D(real), 1.0), "loss_d_fake": bce_logits(self.D(fake), 0.0)}

    def g_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"loss_g": bce_logits(self.D(self.G(self.latent(len(batch[0])))), 1.0)}

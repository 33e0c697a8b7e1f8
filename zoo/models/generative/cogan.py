"""Coupled GAN (Liu & Tuzel, 2016): two GANs, one per domain, that share the generators'
first layers (the high-level structure: which digit, where) and the discriminators'
last layers, trained on unpaired images. From one z the pair (G_A(z), G_B(z)) then shows
the same content in both styles: the joint distribution is learnt without pairs.

Its limit (the notes'): nothing maps a *given* image of A to B. The best one can do is
search for z with G_A(z) close to the image (gradient descent on z, the generator
frozen) and render G_B(z); ``predict`` does exactly that (``invert_steps`` Adam steps),
so its translation_error stands beside CycleGAN's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.models.generative.two_domain_nets import (
    ConvEncoder,
    GeneratorHead,
    GeneratorTrunk,
    TwoDomainModel,
    bce,
    dcgan_init,
    down,
    fixed_noise,
    optimise_latent,
)


class CoGAN(TwoDomainModel):
    """CoGAN on the two-domain digits (see the module docstring). The generators share all
    but their last ``head_layers`` up-samplings; the discriminators share all but their
    first convolution."""

    step_strategy = "manual"
    directions = ("a2b", "b2a")

    def __init__(self, *, channels: int = 3, image_size: int = 32, z_dim: int = 64, width: int = 32,
                 head_layers: int = 2, dropout: float = 0.0, invert_steps: int = 50,
                 invert_lr: float = 0.05) -> None:
        super().__init__()
        self.z_dim, self.invert_steps, self.invert_lr = int(z_dim), int(invert_steps), float(invert_lr)
        self.trunk = GeneratorTrunk(z_dim, width, image_size, head=head_layers)   # shared
        self.head_a = GeneratorHead(self.trunk.out_channels, channels, head=head_layers)
        self.head_b = GeneratorHead(self.trunk.out_channels, channels, head=head_layers)
        self.first_a = down(channels, width, norm=False)                          # per domain
        self.first_b = down(channels, width, norm=False)
        self.disc = ConvEncoder(width, width * 2, image_size // 2, 1, dropout)    # shared
        self.generators = nn.ModuleList([self.trunk, self.head_a, self.head_b])   # EMA: these only
        dcgan_init(self)

    def G_A(self, z: torch.Tensor) -> torch.Tensor:
        return self.head_a(self.trunk(z))

    def G_B(self, z: torch.Tensor) -> torch.Tensor:
        return self.head_b(self.trunk(z))

    def D_A(self, x: torch.Tensor) -> torch.Tensor:
        return self.disc(self.first_a(x))

    def D_B(self, x: torch.Tensor) -> torch.Tensor:
        return self.disc(self.first_b(x))

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"discriminator": [*self.first_a.parameters(), *self.first_b.parameters(),
                                  *self.disc.parameters()],
                "generator": list(self.generators.parameters())}

    def ema_module(self) -> nn.Module:
        return self.generators

    def d_loss(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.randn(len(a), self.z_dim, device=a.device)
        with torch.no_grad():
            h = self.trunk(z)
            fa, fb = self.head_a(h), self.head_b(h)
        return {"loss_d_a": bce(self.D_A(a), True) + bce(self.D_A(fa), False),
                "loss_d_b": bce(self.D_B(b), True) + bce(self.D_B(fb), False)}

    def g_loss(self, n: int, device: torch.device) -> dict[str, torch.Tensor]:
        h = self.trunk(torch.randn(n, self.z_dim, device=device))
        return {"loss_g_a": bce(self.D_A(self.head_a(h)), True),
                "loss_g_b": bce(self.D_B(self.head_b(h)), True)}

    def training_step(self, batch: Any, handle: Any) -> None:
        for mb in handle.micro_batches():
            x = self.batch(mb)
            handle.backward(handle.forward(self.d_loss, x.a, x.b), "discriminator")
        handle.step("discriminator")
        for mb in handle.micro_batches():
            x = self.batch(mb)
            handle.backward(handle.forward(self.g_loss, len(x.a), x.a.device), "generator")
        handle.step("generator")

    def invert(self, images: torch.Tensor, domain: str, z0: torch.Tensor) -> torch.Tensor:
        """z with G_domain(z) close to ``images`` (gradient descent on z from ``z0``)."""
        render = self.G_A if domain == "A" else self.G_B
        return optimise_latent(render, images, z0, self.invert_steps, self.invert_lr)

    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, torch.Tensor]:
        x = self.batch(batch)
        z = fixed_noise(x.index, self.z_dim, x.a.device)
        out = {"samples_a": self.G_A(z), "samples_b": self.G_B(z)}
        if self.invert_steps > 0:
            za = self.invert(x.a, "A", z)
            zb = self.invert(x.b, "B", z)
            out.update(a_to_b=self.G_B(za), a_recon=self.G_A(za), b_to_a=self.G_A(zb))
        return out

    @torch.no_grad()
    def transform(self, images: torch.Tensor, direction: str, route: str = "encoder") -> torch.Tensor:
        self._check_direction(direction)
        z0 = torch.zeros(len(images), self.z_dim, device=images.device)
        if direction == "a2b":
            return self.G_B(self.invert(images, "A", z0))
        return self.G_A(self.invert(images, "B", z0))

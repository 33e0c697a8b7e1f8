"""BiGAN (Donahue, Krähenbühl & Darrell, 2017; ALI, Dumoulin et al., 2017): a generator
G: z -> x, an encoder E: x -> z beside it, and a discriminator that judges *pairs*:
(E(x), x) for a real image is "real", (z, G(z)) is "fake". The only way for G and E to
fool it is for the two joint distributions to agree, so at the optimum E inverts G.

Trained on domain A of the two-domain digits with the non-saturating loss on logits:
D steps ``d_steps`` times, then G and E step together (one optimizer group,
"generator") with the labels swapped. Scored by ``reconstruction_ratio``:
||x - G(E(x))|| relative to the same distance for unrelated pairs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import UserError
from zoo.models.generative.two_domain_nets import (
    ConvEncoder,
    Generator,
    TwoDomainModel,
    bce,
    dcgan_init,
    fixed_noise,
)


class JointDiscriminator(nn.Module):
    """D(x, z) -> (B, 1) logit: conv features of x and an MLP of z, joined by an MLP."""

    def __init__(self, channels: int, width: int, image_size: int, z_dim: int, hidden: int,
                 dropout: float) -> None:
        super().__init__()
        self.image = ConvEncoder(channels, width, image_size, hidden, dropout)
        self.code = nn.Sequential(nn.Linear(z_dim, hidden), nn.LeakyReLU(0.2, True), nn.Dropout(dropout),
                                  nn.Linear(hidden, hidden), nn.LeakyReLU(0.2, True))
        self.joint = nn.Sequential(nn.LeakyReLU(0.2, True), nn.Dropout(dropout),
                                   nn.Linear(2 * hidden, hidden), nn.LeakyReLU(0.2, True),
                                   nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.image(x), self.code(z)], dim=1))


class BiGAN(TwoDomainModel):
    """BiGAN on domain A (see the module docstring)."""

    step_strategy = "manual"
    directions = ("reconstruct",)

    def __init__(self, *, channels: int = 3, image_size: int = 32, z_dim: int = 32, width: int = 32,
                 disc_hidden: int = 256, dropout: float = 0.2, d_steps: int = 1) -> None:
        super().__init__()
        if d_steps < 1:
            raise UserError(f"model.d_steps must be >= 1, got {d_steps}")
        self.z_dim, self.d_steps = int(z_dim), int(d_steps)
        self.G = Generator(z_dim, channels, width, image_size)
        self.E = ConvEncoder(channels, width, image_size, z_dim)
        self.D = JointDiscriminator(channels, width, image_size, z_dim, disc_hidden, dropout)
        dcgan_init(self)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"discriminator": list(self.D.parameters()),
                "generator": [*self.G.parameters(), *self.E.parameters()]}

    def ema_module(self) -> nn.Module:
        return self.G

    def d_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.randn(len(x), self.z_dim, device=x.device)
        with torch.no_grad():
            fake, code = self.G(z), self.E(x)
        real_logit, fake_logit = self.D(x, code), self.D(fake, z)
        return {"loss_d": bce(real_logit, True) + bce(fake_logit, False),
                "log_d_real": torch.sigmoid(real_logit.detach()).mean()}

    def ge_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.randn(len(x), self.z_dim, device=x.device)
        # swapped labels: the non-saturating form for both G and E
        return {"loss_ge": bce(self.D(x, self.E(x)), False) + bce(self.D(self.G(z), z), True)}

    def training_step(self, batch: Any, handle: Any) -> None:
        for _ in range(self.d_steps):
            for mb in handle.micro_batches():
                handle.backward(handle.forward(self.d_loss, self.batch(mb).a), "discriminator")
            handle.step("discriminator")
        for mb in handle.micro_batches():
            handle.backward(handle.forward(self.ge_loss, self.batch(mb).a), "generator")
        handle.step("generator")

    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, torch.Tensor]:
        x = self.batch(batch)
        return {"a_recon": self.G(self.E(x.a)),
                "samples_a": self.G(fixed_noise(x.index, self.z_dim, x.a.device))}

    @torch.no_grad()
    def transform(self, images: torch.Tensor, direction: str, route: str = "encoder") -> torch.Tensor:
        self._check_direction(direction)
        return self.G(self.E(images))

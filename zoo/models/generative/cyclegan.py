"""CycleGAN (Zhu, Park, Isola & Efros, 2017): unpaired image-to-image translation.

Two ResNet-block generators G_AB: A -> B and G_BA: B -> A, two PatchGAN discriminators
D_A, D_B, the least-squares adversarial loss (real -> 1, fake -> 0), the cycle loss
``lambda_cycle * (|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1)`` and the identity loss
``identity * lambda_cycle * (|G_BA(a) - a|_1 + |G_AB(b) - b|_1)`` (the notes' detail-keeping
term; ``identity: 0`` switches it off). The discriminators see generated images through a
history pool of the last ``pool_size`` ones (Shrivastava et al., 2017), so they do not
chase the generators' latest move.

One training step (the manual strategy): the generators step once on
adversarial + cycle + identity losses, then the discriminators step on real images and
the pooled generated ones of that same generator pass (detached): the generators run
once per step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.models.generative.two_domain_nets import (
    PatchDiscriminator,
    ResnetGenerator,
    TwoDomainModel,
)


class ImagePool:
    """History of generated images. ``query(images)`` returns, per image: the image itself
    while fewer than ``size`` are stored (and stores it); once full, with probability 0.5
    a uniformly chosen stored image (replaced by the new one), else the new image. Draws
    from torch's global generator (which checkpoints save); ``size=0`` returns the input."""

    def __init__(self, size: int = 50) -> None:
        self.size = int(size)
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) < 0.5:
                j = int(torch.randint(0, self.size, ()))
                out.append(self.images[j].clone())
                self.images[j] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """The stored images as one (n, C, H, W) tensor (n may be 0)."""
        if self.images:
            return torch.stack(self.images)
        return torch.zeros(0) if like is None else like.new_zeros((0, *like.shape[1:]))

    def load(self, stored: torch.Tensor) -> None:
        self.images = [im.clone() for im in stored] if stored.ndim == 4 else []


def ls_loss(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al., 2017): mean (D(x) - 1)^2 for real, D(x)^2 for fake."""
    target = torch.ones_like(pred) if real else torch.zeros_like(pred)
    return F.mse_loss(pred.float(), target.float())


class CycleGAN(TwoDomainModel):
    """CycleGAN between the data's domains A and B (see the module docstring)."""

    step_strategy = "manual"
    directions = ("a2b", "b2a")

    def __init__(self, *, channels: int = 3, gen_width: int = 16, blocks: int = 3,
                 disc_width: int = 32, disc_layers: int = 2, lambda_cycle: float = 10.0,
                 identity: float = 0.5, pool_size: int = 50) -> None:
        super().__init__()
        self.G_AB = ResnetGenerator(channels, gen_width, blocks)
        self.G_BA = ResnetGenerator(channels, gen_width, blocks)
        self.D_A = PatchDiscriminator(channels, disc_width, disc_layers)
        self.D_B = PatchDiscriminator(channels, disc_width, disc_layers)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        self.generators = nn.ModuleList([self.G_AB, self.G_BA])  # EMA averages these only
        self.lambda_cycle, self.identity = float(lambda_cycle), float(identity)
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"generator": [*self.G_AB.parameters(), *self.G_BA.parameters()],
                "discriminator": [*self.D_A.parameters(), *self.D_B.parameters()]}

    def ema_module(self) -> nn.Module:
        return self.generators

    # -- losses ------------------------------------------------------------------------------
    def generator_losses(self, a: torch.Tensor, b: torch.Tensor) -> tuple[dict[str, torch.Tensor], ...]:
        fake_b, fake_a = self.G_AB(a), self.G_BA(b)
        losses = {"loss_gan_ab": ls_loss(self.D_B(fake_b), True),
                  "loss_gan_ba": ls_loss(self.D_A(fake_a), True),
                  "loss_cycle": self.lambda_cycle * (F.l1_loss(self.G_BA(fake_b).float(), a.float())
                                                     + F.l1_loss(self.G_AB(fake_a).float(), b.float()))}
        if self.identity > 0:
            losses["loss_identity"] = self.identity * self.lambda_cycle * (
                F.l1_loss(self.G_BA(a).float(), a.float()) + F.l1_loss(self.G_AB(b).float(), b.float()))
        return losses, fake_a.detach(), fake_b.detach()

    def discriminator_losses(self, a: torch.Tensor, b: torch.Tensor, fake_a: torch.Tensor,
                             fake_b: torch.Tensor) -> dict[str, torch.Tensor]:
        # the 0.5 slows D relative to G, as in the authors' code
        return {"loss_d_a": 0.5 * (ls_loss(self.D_A(a), True) + ls_loss(self.D_A(fake_a), False)),
                "loss_d_b": 0.5 * (ls_loss(self.D_B(b), True) + ls_loss(self.D_B(fake_b), False))}

    def training_step(self, batch: Any, handle: Any) -> None:
        fakes = []
        for mb in handle.micro_batches():
            x = self.batch(mb)
            losses, fake_a, fake_b = handle.forward(self.generator_losses, x.a, x.b)
            handle.backward(losses, "generator")
            fakes.append((self.pool_a.query(fake_a), self.pool_b.query(fake_b)))
        handle.step("generator")
        for mb, (fake_a, fake_b) in zip(handle.micro_batches(), fakes):
            x = self.batch(mb)
            handle.backward(handle.forward(self.discriminator_losses, x.a, x.b, fake_a, fake_b),
                            "discriminator")
        handle.step("discriminator")

    # -- pool in the checkpoint ------------------------------------------------------------
    def training_state(self) -> dict[str, torch.Tensor]:
        return {"pool_a": self.pool_a.state(), "pool_b": self.pool_b.state()}

    def load_training_state(self, state: dict[str, torch.Tensor] | None) -> None:
        if state:
            self.pool_a.load(state["pool_a"])
            self.pool_b.load(state["pool_b"])

    # -- prediction --------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, torch.Tensor]:
        x = self.batch(batch)
        a_to_b, b_to_a = self.G_AB(x.a), self.G_BA(x.b)
        return {"a_to_b": a_to_b, "b_to_a": b_to_a,
                "a_cycle": self.G_BA(a_to_b), "b_cycle": self.G_AB(b_to_a)}

    @torch.no_grad()
    def transform(self, images: torch.Tensor, direction: str, route: str = "encoder") -> torch.Tensor:
        self._check_direction(direction)
        return (self.G_AB if direction == "a2b" else self.G_BA)(images)

"""Finding the latent code of a given image: the notes' routes to invert a generator.

The generator is a domain-conditional DCGAN G(z, d) trained first, inside this run, on
the unpaired images of both domains (phase 1, ``gan_steps`` steps: a discriminator step,
then a generator step). With G frozen:

1. **Optimisation** (``predict``: ``a_recon_optimised``): gradient descent on z alone so
   that G(z, A) matches the image. Needs no training, but costs ``optimise_steps``
   generator forward and backward passes per image: slow (``predict.py ...
   route=optimise`` prints the time per image).
2. **An encoder trained on G's own samples** (phase 2, the remaining steps):
   E(G(z, d)) regresses z in squared error. One forward pass per image, fast; but E never
   sees a real image, so it is only as good as G's samples are like real ones: the gap
   is measured as ``reconstruction_ratio`` (real inputs) beside
   ``reconstruction_ratio_generated`` (G's samples as inputs).

With a code of an A image, G(z, B) renders "the same" content in B: image to image
translation through the latent space (``a_to_b`` from the encoder, ``a_to_b_optimised``
from route 1). The third route, a shared encoder with one decoder per domain, is
``zoo.models.generative.swap_autoencoder``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import UserError
from zoo.models.generative.two_domain_nets import (
    ConvEncoder,
    Generator,
    TwoDomainModel,
    bce,
    dcgan_init,
    fixed_noise,
    optimise_latent,
)

DOMAINS = ("A", "B")


class LatentInversion(TwoDomainModel):
    """A domain-conditional GAN, then an encoder trained on its samples; predictions by
    both inversion routes (see the module docstring)."""

    step_strategy = "manual"
    directions = ("reconstruct", "a2b", "b2a")

    def __init__(self, *, channels: int = 3, image_size: int = 32, z_dim: int = 32, width: int = 32,
                 gan_steps: int = 1500, optimise_steps: int = 50, optimise_lr: float = 0.05,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if gan_steps < 0 or optimise_steps < 0:
            raise UserError(f"model.gan_steps ({gan_steps}) and model.optimise_steps "
                            f"({optimise_steps}) must be >= 0")
        self.z_dim, self.gan_steps = int(z_dim), int(gan_steps)
        self.optimise_steps, self.optimise_lr = int(optimise_steps), float(optimise_lr)
        # the domain enters G as a one-hot beside z, and D as two constant input planes
        self.G = Generator(z_dim + 2, channels, width, image_size)
        self.D = ConvEncoder(channels + 2, width, image_size, 1, dropout)
        self.E = ConvEncoder(channels, width, image_size, z_dim)
        dcgan_init(self)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.int64))  # decides the phase

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"discriminator": list(self.D.parameters()), "generator": list(self.G.parameters()),
                "encoder": list(self.E.parameters())}

    def ema_module(self) -> nn.Module:
        return self.G

    # -- the conditional GAN ---------------------------------------------------------------
    def generate(self, z: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim), domain (B,) 0 for A / 1 for B -> (B, C, S, S)."""
        return self.G(torch.cat([z, F.one_hot(domain, 2).to(z.dtype)], dim=1))

    def judge(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        planes = F.one_hot(domain, 2).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return self.D(torch.cat([x, planes], dim=1))

    def _both(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([a, b])
        d = torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).long().to(a.device)
        return x, d

    def d_loss(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        x, d = self._both(a, b)
        with torch.no_grad():
            fake = self.generate(torch.randn(len(x), self.z_dim, device=x.device), d)
        return {"loss_d": bce(self.judge(x, d), True) + bce(self.judge(fake, d), False)}

    def g_loss(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        _, d = self._both(a, b)
        fake = self.generate(torch.randn(len(d), self.z_dim, device=a.device), d)
        return {"loss_g": bce(self.judge(fake, d), True)}

    # -- the encoder on G's samples --------------------------------------------------------
    def e_loss(self, n: int, device: torch.device) -> dict[str, torch.Tensor]:
        z = torch.randn(n, self.z_dim, device=device)
        d = torch.randint(0, 2, (n,), device=device)
        with torch.no_grad():
            x = self.generate(z, d)
        return {"loss_encoder": F.mse_loss(self.E(x).float(), z.float())}

    def training_step(self, batch: Any, handle: Any) -> None:
        if int(self.steps_done) < self.gan_steps:
            for group, fn in (("discriminator", self.d_loss), ("generator", self.g_loss)):
                for mb in handle.micro_batches():
                    x = self.batch(mb)
                    handle.backward(handle.forward(fn, x.a, x.b), group)
                handle.step(group)
        else:
            self.G.eval()  # frozen: BatchNorm keeps the statistics of phase 1
            for mb in handle.micro_batches():
                x = self.batch(mb)
                handle.backward(handle.forward(self.e_loss, 2 * len(x.a), x.a.device), "encoder")
            handle.step("encoder")
            self.G.train()
        self.steps_done += 1

    # -- prediction --------------------------------------------------------------------------
    def _domain(self, n: int, which: str, device: torch.device) -> torch.Tensor:
        return torch.full((n,), DOMAINS.index(which), dtype=torch.int64, device=device)

    def render(self, z: torch.Tensor, which: str) -> torch.Tensor:
        return self.generate(z, self._domain(len(z), which, z.device))

    def optimise(self, images: torch.Tensor, which: str, z0: torch.Tensor) -> torch.Tensor:
        """Route 1: z with G(z, which) close to ``images``, by gradient descent on z."""
        return optimise_latent(lambda z: self.render(z, which), images, z0, self.optimise_steps,
                               self.optimise_lr)

    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, torch.Tensor]:
        x = self.batch(batch)
        z = fixed_noise(x.index, self.z_dim, x.a.device)
        generated = self.render(z, "A")
        za = self.E(x.a)
        out = {"a_recon": self.render(za, "A"), "a_to_b": self.render(za, "B"),
               "b_to_a": self.render(self.E(x.b), "A"),
               "generated_a": generated, "generated_recon_a": self.render(self.E(generated), "A"),
               "samples_a": generated, "samples_b": self.render(z, "B")}
        if self.optimise_steps > 0:
            zo = self.optimise(x.a, "A", torch.zeros_like(z))
            out.update(a_recon_optimised=self.render(zo, "A"), a_to_b_optimised=self.render(zo, "B"))
        return out

    @torch.no_grad()
    def transform(self, images: torch.Tensor, direction: str, route: str = "encoder") -> torch.Tensor:
        self._check_direction(direction)
        source, target = {"reconstruct": ("A", "A"), "a2b": ("A", "B"), "b2a": ("B", "A")}[direction]
        if route == "optimise":
            z = self.optimise(images, source, torch.zeros(len(images), self.z_dim, device=images.device))
        else:
            z = self.E(images)
        return self.render(z, target)

"""The original GAN (Goodfellow et al. 2014) with MLPs, in its non-saturating form:
D maximises log D(x) + log(1 - D(G(z))); G maximises log D(G(z)) (the min-max
generator loss log(1 - D(G(z))) saturates while D wins). ``d_steps`` discriminator
updates per generator update: a large ratio lets D become near-optimal, whose
gradients then tell G little (the notes' warning; measured in the benchmark).
``r1_gamma`` > 0 adds Mescheder et al.'s (2018) R1 penalty gamma/2 E||grad_x D(x)||^2 on
real points, which damps the rotation of the two players around the equilibrium (the
plain game circles from mode to mode on the ring)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch import nn

from zoo.models.generative.base import AdversarialModel, bce_logits


def mlp(sizes: list[int], act: type[nn.Module], final: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


class GAN(AdversarialModel):
    """MLP generator (latent_dim -> hidden x layers -> data_dim) and discriminator."""

    def __init__(self, *, data_dim: int = 2, latent_dim: int = 8, hidden: int = 128, layers: int = 3,
                 d_steps: int = 1, r1_gamma: float = 0.0) -> None:
        super().__init__(latent_dim=latent_dim, image=False, d_steps=d_steps)
        self.r1_gamma = float(r1_gamma)
        self.G = mlp([latent_dim, *[hidden] * layers, data_dim], nn.ReLU)
        self.D = mlp([data_dim, *[hidden] * layers, 1], lambda: nn.LeakyReLU(0.2))

    def decode(self, z: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.G(z)

    def d_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        real = batch[0]
        with torch.no_grad():
            fake = self.G(self.latent(len(real)))
        if self.r1_gamma > 0:
            real = real.detach().requires_grad_(True)
        score = self.D(real)
        out = {"loss_d_real": bce_logits(score, 1.0), "loss_d_fake": bce_logits(self.D(fake), 0.0)}
        if self.r1_gamma > 0:
            (grad,) = torch.autograd.grad(score.float().sum(), real, create_graph=True)
            out["loss_d_r1"] = 0.5 * self.r1_gamma * grad.pow(2).sum(1).mean()
        return out

    def g_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        fake = self.G(self.latent(len(batch[0])))
        return {"loss_g": bce_logits(self.D(fake), 1.0)}

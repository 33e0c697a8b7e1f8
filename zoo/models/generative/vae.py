"""Variational autoencoder (Kingma & Welling 2014) for 32x32 images: a convolutional
encoder gives q(z|x) = N(mu, diag(exp(logvar))); z = mu + exp(logvar / 2) * eps (the
reparameterisation trick, so gradients flow through the sample); a DCGAN-style decoder
reconstructs x. Loss per image: the summed squared error (a Gaussian likelihood, the
MSE the notes blame for lost small details) + ``beta`` * KL(q(z|x) || N(0, I))."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.models.generative.base import GenerativeModel
from zoo.models.generative.dcgan import check_size, dcgan_encoder, dcgan_generator


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """(B,) KL(N(mu, exp(logvar)) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


class VAE(GenerativeModel):
    def __init__(self, *, channels: int = 1, image_size: int = 32, latent_dim: int = 32,
                 width: int = 32, beta: float = 1.0) -> None:
        super().__init__(latent_dim=latent_dim, image=True)
        check_size(image_size)
        self.beta = float(beta)
        self.E = nn.Sequential(dcgan_encoder(channels, width), nn.Flatten(),
                               nn.Linear(width * 4 * 16, 2 * latent_dim))
        self.G = dcgan_generator(latent_dim, channels, width)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"main": list(self.parameters())}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.E(x).float().chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def decode(self, z: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.G(z)

    def losses(self, batch: Any) -> dict[str, torch.Tensor]:
        x = self.to_net(batch[0])
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        rec = self.G(z).float()
        # in [0, 1] units, summed over pixels, averaged over images
        sq = ((rec - x.float()) / 2).pow(2).flatten(1).sum(1).mean()
        kl = gaussian_kl(mu, logvar).mean()
        return {"loss_rec": sq, "loss_kl": self.beta * kl}

    def training_step(self, batch: Any, handle: Any) -> None:
        for mb in handle.micro_batches():
            handle.backward(handle.forward(self.losses, mb), "main")
        handle.step("main")

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encode(self.to_net(images))
        return self.from_net(self.G(mu))

    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, torch.Tensor]:
        out = super().predict(batch)
        out["reconstruction"] = self.reconstruct(batch[0])
        return out

"""Denoising diffusion probabilistic model (Ho et al. 2020).

Forward: q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with a linear beta schedule
over ``timesteps`` steps (beta_end chosen so abar_T is near 0: x_T is pure noise). The
network predicts the noise eps from (x_t, t); loss ||eps - eps_theta(x_t, t)||^2.
Sampling is ancestral: x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)
+ sigma_t z with sigma_t^2 = beta_t, from x_T ~ N(0, I). 2-D points use an MLP, images a
small convolutional U-Net, both with a sinusoidal time embedding."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import UserError
from zoo.models.generative.base import GenerativeModel


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer steps -> (B, dim) sinusoids (Transformer positional encoding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], 1)


class PointDenoiser(nn.Module):
    def __init__(self, dim: int, hidden: int, tdim: int = 32) -> None:
        super().__init__()
        self.tdim = tdim
        self.net = nn.Sequential(nn.Linear(dim + tdim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, time_embedding(t, self.tdim)], 1))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2, self.c2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x))) + self.t(temb)[:, :, None, None]
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class ImageDenoiser(nn.Module):
    """A two-level U-Net: (B, C, S, S) -> (B, C, S, S) noise estimate."""

    def __init__(self, channels: int, width: int, tdim: int = 64) -> None:
        super().__init__()
        self.tdim = tdim
        self.temb = nn.Sequential(nn.Linear(tdim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.d1 = ResBlock(width, width, tdim)
        self.down = nn.Conv2d(width, width * 2, 4, 2, 1)
        self.d2 = ResBlock(width * 2, width * 2, tdim)
        self.mid = ResBlock(width * 2, width * 2, tdim)
        self.up = nn.ConvTranspose2d(width * 2, width, 4, 2, 1)
        self.u1 = ResBlock(width * 2, width, tdim)
        self.out = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e = self.temb(time_embedding(t, self.tdim))
        h1 = self.d1(self.inp(x), e)
        h2 = self.mid(self.d2(self.down(h1), e), e)
        return self.out(self.u1(torch.cat([self.up(h2), h1], 1), e))


class DDPM(GenerativeModel):
    """``channels: 0`` (2-D points, ``data_dim`` wide) or the image channels of 32x32 data."""

    num_fixed = 16

    def __init__(self, *, channels: int = 0, image_size: int = 0, data_dim: int = 2,
                 timesteps: int = 200, beta_start: float = 1e-4, beta_end: float = 0.1,
                 hidden: int = 256, width: int = 32) -> None:
        image = int(channels) > 0
        self.shape = (int(channels), int(image_size), int(image_size)) if image else (int(data_dim),)
        super().__init__(latent_dim=math.prod(self.shape), image=image)
        if not 0 < beta_start <= beta_end < 1 or timesteps < 1:
            raise UserError(f"model.beta_start={beta_start}, beta_end={beta_end} must satisfy "
                            f"0 < beta_start <= beta_end < 1 and timesteps >= 1")
        self.T = int(timesteps)
        betas = torch.linspace(beta_start, beta_end, self.T, dtype=torch.float64)
        abar = torch.cumprod(1 - betas, 0)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("abar", abar.float(), persistent=False)
        self.G = ImageDenoiser(int(channels), width) if image else PointDenoiser(int(data_dim), hidden)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"main": list(self.G.parameters())}

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, for 0-based steps t (B,)."""
        a = self.abar[t].reshape(-1, *[1] * (x0.ndim - 1))
        return a.sqrt() * x0 + (1 - a).sqrt() * eps

    def losses(self, batch: Any) -> dict[str, torch.Tensor]:
        x0 = self.to_net(batch[0])
        t = torch.randint(0, self.T, (len(x0),), device=x0.device)
        eps = torch.randn_like(x0)
        return {"loss_eps": F.mse_loss(self.G(self.q_sample(x0, t, eps), t).float(), eps.float())}

    def training_step(self, batch: Any, handle: Any) -> None:
        for mb in handle.micro_batches():
            handle.backward(handle.forward(self.losses, mb), "main")
        handle.step("main")

    @torch.no_grad()
    def decode(self, z: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Ancestral sampling from x_T = z (flattened noise (B, prod(shape)))."""
        x = z.reshape(len(z), *self.shape)
        for i in reversed(range(self.T)):
            t = torch.full((len(x),), i, device=x.device, dtype=torch.int64)
            beta, abar = self.betas[i], self.abar[i]
            eps = self.G(x, t).float()
            x = (x - beta / (1 - abar).sqrt() * eps) / (1 - beta).sqrt()
            if i > 0:
                x = x + beta.sqrt() * torch.randn_like(x)
        return x.clamp(-1, 1) if self.image else x

    def decode_fixed(self, z: torch.Tensor, cond: Any = None) -> torch.Tensor:
        # the per-step noise is fixed too, so the grid changes only as the model does
        with torch.random.fork_rng(devices=[z.device] if z.device.type == "cuda" else []):
            torch.manual_seed(0)
            return self.decode(z, cond)

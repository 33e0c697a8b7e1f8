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
    """D(x, z) -> (B, 1) logit: conv features of x and an MLP of z, joined by an MLP.
    ``spectral``: spectral normalisation of every conv/linear weight (Miyato et al., 2018)."""

    def __init__(self, channels: int, width: int, image_size: int, z_dim: int, hidden: int,
                 dropout: float) -> None:
        super().__init__()
        self.image = ConvEncoder(channels, width, image_size, hidden, dropout)
        self.code = nn.Sequential(nn.Linear(z_dim, hidden), nn.LeakyReLU(0.2, True), nn.Dropout(dropout),
                                  nn.Linear(hidden, hidden), nn.LeakyReLU(0.2, True))
        self.joint = nn.Sequential(nn.LeakyReLU(0.2, True), nn.Dropout(dropout),
                                   nn.Linear(2 * hidden, hidden), nn.LeakyReLU(0.2, True),
                                   nn.Linear(hidden, 1))

    def apply_spectral_norm(self) -> None:
        """Wrap the weights (after initialisation: the power iteration starts from them)."""
        for m in list(self.modules()):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.image(x), self.code(z)], dim=1))


class BiGAN(TwoDomainModel):
    """BiGAN on domain A (see the module docstring).

    ``encoder``: ``deterministic`` (BiGAN: z = E(x)) or ``stochastic`` (ALI: E gives a
    mean and a log-variance, z = mu + sigma * eps reparameterised, and the mean is the
    code at prediction). ``spectral_norm``: spectral normalisation of D's weights
    (Miyato et al., 2018), a Lipschitz bound that keeps D from outrunning G and E.
    ``cycle_critic``: ALICE's adversarial conditional-entropy term (Li et al., 2017,
    "ALICE", the adversarial form of its cycle consistency): a second critic D_xx learns
    to tell (x, x) from (x, G(E(x))), and G and E are also trained to fool it.
    ``cycle_weight`` > 0: ALICE's explicit form of the same regulariser, a bound on the
    conditional entropy H(x | z) that the adversarial game alone leaves free (Li et al.,
    2017): ``cycle_weight`` times the mean ``cycle_loss`` ("l1" or "l2") of x - G(E(x))
    per pixel, added to the G/E loss. With 0 (and no critic) no pixel distance enters
    any loss and the model is the pure BiGAN, whose pairs are only judged."""

    step_strategy = "manual"
    directions = ("reconstruct",)
    encoders = ("deterministic", "stochastic")

    def __init__(self, *, channels: int = 3, image_size: int = 32, z_dim: int = 32, width: int = 32,
                 disc_hidden: int = 256, dropout: float = 0.2, d_steps: int = 1,
                 encoder: str = "deterministic", spectral_norm: bool = False,
                 cycle_critic: bool = False, cycle_weight: float = 0.0,
                 cycle_loss: str = "l1") -> None:
        super().__init__()
        if d_steps < 1:
            raise UserError(f"model.d_steps must be >= 1, got {d_steps}")
        if encoder not in self.encoders:
            raise UserError(f"model.encoder must be one of {', '.join(self.encoders)}, got {encoder!r}")
        if cycle_weight < 0:
            raise UserError(f"model.cycle_weight must be >= 0, got {cycle_weight}")
        if cycle_loss not in ("l1", "l2"):
            raise UserError(f"model.cycle_loss must be one of l1, l2, got {cycle_loss!r}")
        self.cycle_weight, self.cycle_loss = float(cycle_weight), cycle_loss
        self.z_dim, self.d_steps, self.stochastic = int(z_dim), int(d_steps), encoder == "stochastic"
        self.G = Generator(z_dim, channels, width, image_size)
        self.E = ConvEncoder(channels, width, image_size, z_dim * (2 if self.stochastic else 1))
        self.D = JointDiscriminator(channels, width, image_size, z_dim, disc_hidden, dropout)
        # ALICE's adversarial cycle critic: (x, x) real, (x, G(E(x))) fake, (B, 2C, S, S) -> (B, 1)
        self.D_xx = ConvEncoder(2 * channels, width, image_size, 1, dropout) if cycle_critic else None
        dcgan_init(self)
        if spectral_norm:
            self.D.apply_spectral_norm()

    def encode(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """(B, C, S, S) -> (B, z_dim): E(x), or for the stochastic encoder a draw from
        N(mu, sigma^2) (``sample``) or its mean mu."""
        h = self.E(x)
        if not self.stochastic:
            return h
        mu, logvar = h.chunk(2, dim=1)
        if not sample:
            return mu
        return mu + torch.randn_like(mu) * (0.5 * logvar.clamp(-10, 4)).exp()

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        critics = [self.D] + ([self.D_xx] if self.D_xx is not None else [])
        return {"discriminator": [p for c in critics for p in c.parameters()],
                "generator": [*self.G.parameters(), *self.E.parameters()]}

    def ema_module(self) -> nn.Module:
        # G(E(x)) is what validation scores: an average of G beside a raw E would pair
        # weights that never trained together, so the whole model is averaged
        return self

    def d_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.randn(len(x), self.z_dim, device=x.device)
        with torch.no_grad():
            fake, code = self.G(z), self.encode(x)
        real_logit, fake_logit = self.D(x, code), self.D(fake, z)
        loss = bce(real_logit, True) + bce(fake_logit, False)
        if self.D_xx is not None:
            with torch.no_grad():
                recon = self.G(code)
            loss = loss + bce(self.D_xx(torch.cat([x, x], 1)), True) + \
                bce(self.D_xx(torch.cat([x, recon], 1)), False)
        return {"loss_d": loss, "log_d_real": torch.sigmoid(real_logit.detach()).mean()}

    def ge_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.randn(len(x), self.z_dim, device=x.device)
        code = self.encode(x)
        # swapped labels: the non-saturating form for both G and E
        loss = bce(self.D(x, code), False) + bce(self.D(self.G(z), z), True)
        out = {}
        if self.D_xx is not None or self.cycle_weight > 0:
            recon = self.G(code)
            if self.D_xx is not None:
                loss = loss + bce(self.D_xx(torch.cat([x, recon], 1)), True)
            if self.cycle_weight > 0:
                diff = (x.float() - recon.float())
                cycle = diff.abs().mean() if self.cycle_loss == "l1" else diff.pow(2).mean()
                out["loss_cycle"] = self.cycle_weight * cycle
        out["loss_ge"] = loss
        return out

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
        return {"a_recon": self.G(self.encode(x.a, sample=False)),
                "samples_a": self.G(fixed_noise(x.index, self.z_dim, x.a.device))}

    @torch.no_grad()
    def transform(self, images: torch.Tensor, direction: str, route: str = "encoder") -> torch.Tensor:
        self._check_direction(direction)
        return self.G(self.encode(images, sample=False))

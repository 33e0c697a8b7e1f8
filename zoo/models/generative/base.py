"""What every generative model shares: the ``generative`` task, the manual step, and
``sample`` (what validation, pictures and ``predict.py`` draw from).

``predict(batch)`` returns a dict: ``samples`` (one per real item of the batch, in the
data's own form: (B, 2) points or (B, C, H, W) images in [0, 1]), ``labels`` or
``attributes`` (what conditional samples were asked for: the batch's own), and for
pictures ``fixed`` (samples of a fixed noise kept in a buffer, the same across training)
and ``interpolation`` (``rows`` x ``steps`` samples along straight lines in latent space).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.models.base import ZooModel


def bce_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy with logits against a constant target (AMP safe)."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), target))


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def slerp_free_line(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """(R, Z) endpoints -> (R * steps, Z) points on the straight segments between them."""
    t = torch.linspace(0, 1, steps, device=a.device, dtype=a.dtype)[None, :, None]
    return (a[:, None] * (1 - t) + b[:, None] * t).reshape(-1, a.shape[-1])


class GenerativeModel(ZooModel):
    """Base of the generative family. Subclasses implement ``decode(z, cond)`` (latent and
    condition to a sample in [-1, 1] for images / data units for points), ``latent(n)``
    and the manual ``training_step``; conditional ones set ``conditional``."""

    task = "generative"
    step_strategy = "manual"
    conditional = ""  # "", "labels" or "text"
    num_fixed = 16
    interp_rows, interp_steps = 4, 8

    def __init__(self, *, latent_dim: int, image: bool) -> None:
        super().__init__()
        self.latent_dim, self.image = int(latent_dim), bool(image)
        g = torch.Generator().manual_seed(1234)
        self.register_buffer("fixed_noise", torch.randn(self.num_fixed, self.latent_dim, generator=g))
        self.register_buffer("interp_ends", torch.randn(2, self.interp_rows, self.latent_dim, generator=g))

    # subclasses ------------------------------------------------------------------------
    def decode(self, z: torch.Tensor, cond: Any = None) -> torch.Tensor:
        raise NotImplementedError

    def decode_fixed(self, z: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """``decode`` for the pictures that must not change between validations."""
        return self.decode(z, cond)

    def latent(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.fixed_noise.device)

    # the data's form <-> the network's -------------------------------------------------
    def to_net(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1 if self.image else x

    def from_net(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() + 1) / 2).clamp(0, 1) if self.image else x.float()

    def ema_module(self) -> nn.Module:
        return self.generator_module()

    def generator_module(self) -> nn.Module:
        return self.G  # type: ignore[return-value]

    # sampling -----------------------------------------------------------------------------
    def condition_of(self, batch: Any) -> Any:
        """The condition of each real item (labels, or (tokens, attributes)); None if none."""
        return None

    def fixed_condition(self, n: int) -> Any:
        return None

    @torch.no_grad()
    def sample(self, n: int, cond: Any = None) -> torch.Tensor:
        """``n`` samples in the data's form, conditioned on ``cond`` when given."""
        return self.from_net(self.decode(self.latent(n), cond))

    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, torch.Tensor]:
        real = batch[0]
        cond = self.condition_of(batch)
        out = {"samples": self.from_net(self.decode(self.latent(len(real)), cond))}
        if cond is not None:
            out.update(self.asked(cond))
        out["fixed"] = self.from_net(self.decode_fixed(self.fixed_noise, self.fixed_condition(self.num_fixed)))
        if self.image:
            z = slerp_free_line(self.interp_ends[0], self.interp_ends[1], self.interp_steps)
            fixed_cond = self.fixed_condition(self.interp_rows)
            if fixed_cond is not None:
                fixed_cond = repeat_condition(fixed_cond, self.interp_steps)
            out["interpolation"] = self.from_net(self.decode_fixed(z, fixed_cond))
        return out

    def asked(self, cond: Any) -> dict[str, torch.Tensor]:
        return {"labels": cond}

    def request(self, n: int, label: int | None = None, text: str | None = None) -> Any:
        """The condition ``predict.py`` asks for (``label=`` / ``text=``), for ``n`` samples."""
        if label is not None:
            raise request_condition_error(self, "label")
        if text is not None:
            raise request_condition_error(self, "text")
        return None


def repeat_condition(cond: Any, times: int) -> Any:
    """Each row of a condition repeated ``times`` in a row (for interpolation rows)."""
    if isinstance(cond, tuple):
        return tuple(repeat_condition(c, times) for c in cond)
    return cond.repeat_interleave(times, dim=0)


def request_condition_error(model: Any, what: str) -> Exception:
    from zoo.errors import UserError

    return UserError(f"{type(model).__name__} is not conditioned on {what}; drop {what}=")


class AdversarialModel(GenerativeModel):
    """A generator ``G`` and a discriminator ``D`` trained in turn through the manual step:
    ``d_steps`` discriminator updates (each on fresh generated samples against the same
    real batch), then one generator update. Subclasses give ``d_loss(batch)`` and
    ``g_loss(batch)`` (named losses), computed under the handle's autocast."""

    def __init__(self, *, latent_dim: int, image: bool, d_steps: int = 1) -> None:
        super().__init__(latent_dim=latent_dim, image=image)
        if int(d_steps) < 1:
            from zoo.errors import UserError

            raise UserError(f"model.d_steps={d_steps} must be at least 1")
        self.d_steps = int(d_steps)

    def discriminator_module(self) -> nn.Module:
        return self.D  # type: ignore[return-value]

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"discriminator": list(self.discriminator_module().parameters()),
                "generator": list(self.generator_module().parameters())}

    def d_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def g_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def training_step(self, batch: Any, handle: Any) -> None:
        for _ in range(self.d_steps):
            for mb in handle.micro_batches():
                handle.backward(handle.forward(self.d_loss, mb), "discriminator")
            handle.step("discriminator")
        for mb in handle.micro_batches():
            handle.backward(handle.forward(self.g_loss, mb), "generator")
        handle.step("generator")

"""Blocks and the shared base of the models that map images between two domains or
invert a generator (BiGAN, CoGAN, CycleGAN, latent inversion, the swap autoencoder).

Images are (B, C, S, S) in [-1, 1] with S = 4 * 2**k (32 on the two-domain digits).
``DCGAN``-style stacks (strided transposed convolutions up, strided convolutions down,
BatchNorm, N(0, 0.02) initialisation) serve the latent-variable models; the ResNet
generator and the PatchGAN discriminator are CycleGAN's (Zhu et al., 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import UserError
from zoo.models.base import ZooModel
from zoo.models.generative.base import dcgan_init  # noqa: F401 - re-exported for the two-domain models


def check_size(image_size: int, least: int = 8) -> int:
    """Number of 2x up-samplings from 4x4 to ``image_size`` (a power of two >= ``least``)."""
    k = math.log2(image_size / 4) if image_size >= 4 else -1
    if image_size < least or k != int(k):
        raise UserError(f"image_size must be a power of two >= {least}, got {image_size}")
    return int(k)


def up(cin: int, cout: int) -> nn.Sequential:
    """(B, cin, s, s) -> (B, cout, 2s, 2s): transposed conv, BatchNorm, ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(True))


def down(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    """(B, cin, 2s, 2s) -> (B, cout, s, s): strided conv, BatchNorm (optional), LeakyReLU(0.2)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, True))
    return nn.Sequential(*layers)


class GeneratorTrunk(nn.Module):
    """z (B, z_dim) -> (B, width * 2**(k - head), 4 * 2**(k - head) squared) features: a
    linear projection to 4x4 and all up-samplings but the last ``head`` ones."""

    def __init__(self, z_dim: int, width: int, image_size: int, head: int = 1) -> None:
        super().__init__()
        k = check_size(image_size)
        self.top = width * 2 ** (k - 1)
        self.project = nn.Sequential(nn.Linear(z_dim, self.top * 16, bias=False),
                                     nn.BatchNorm1d(self.top * 16), nn.ReLU(True))
        chans = [width * 2 ** (k - 1 - i) for i in range(k)]  # 4x4 ... final-1 resolution
        self.ups = nn.Sequential(*[up(chans[i], chans[i + 1]) for i in range(k - head)])
        self.out_channels = chans[k - head]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.ups(self.project(z).view(len(z), self.top, 4, 4))


class GeneratorHead(nn.Module):
    """The last ``head`` up-samplings to an image (B, channels, S, S) in [-1, 1] (tanh)."""

    def __init__(self, in_channels: int, channels: int, head: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(head - 1):
            layers.append(up(c, c // 2))
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class Generator(nn.Module):
    """DCGAN generator z (B, z_dim) -> (B, channels, S, S) in [-1, 1]."""

    def __init__(self, z_dim: int, channels: int, width: int, image_size: int) -> None:
        super().__init__()
        self.trunk = GeneratorTrunk(z_dim, width, image_size)
        self.head = GeneratorHead(self.trunk.out_channels, channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(z))


class ConvEncoder(nn.Module):
    """(B, channels, S, S) -> (B, out_dim): strided convs down to 4x4 (no norm on the
    first), flattened, optional dropout, one linear layer. A discriminator (out_dim 1,
    a logit), an encoder to z, or the image branch of BiGAN's joint discriminator."""

    def __init__(self, channels: int, width: int, image_size: int, out_dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        k = check_size(image_size)
        chans = [channels] + [width * 2 ** i for i in range(k)]
        self.convs = nn.Sequential(*[down(chans[i], chans[i + 1], norm=i > 0) for i in range(k)])
        self.features = chans[-1] * 16
        self.out = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(self.features, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.convs(x))


# -- CycleGAN's networks -------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x), reflection padded (same size)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
            nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.'s image-to-image generator as CycleGAN uses it:
    c7s1-w, two stride-2 downs, ``blocks`` residual blocks, two stride-2 ups, c7s1-C, tanh.
    (B, C, S, S) -> (B, C, S, S) in [-1, 1]; S divisible by 4."""

    def __init__(self, channels: int = 3, width: int = 16, blocks: int = 3) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, w, 7),
                                   nn.InstanceNorm2d(w), nn.ReLU(True)]
        for m in (1, 2):
            layers += [nn.Conv2d(w * m, w * m * 2, 3, 2, 1), nn.InstanceNorm2d(w * m * 2), nn.ReLU(True)]
        layers += [ResnetBlock(w * 4) for _ in range(blocks)]
        for m in (4, 2):
            layers += [nn.ConvTranspose2d(w * m, w * m // 2, 3, 2, 1, output_padding=1),
                       nn.InstanceNorm2d(w * m // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al., 2017): ``layers`` stride-2 4x4 convs, one stride-1, then a
    1-channel conv: (B, C, S, S) -> (B, 1, P, P) logits, one per overlapping patch
    (S=32, layers=2: 6x6 patches of a 22-pixel receptive field)."""

    def __init__(self, channels: int = 3, width: int = 32, layers: int = 2) -> None:
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = width
        for _ in range(layers - 1):
            seq += [nn.Conv2d(c, c * 2, 4, 2, 1), nn.InstanceNorm2d(c * 2), nn.LeakyReLU(0.2, True)]
            c *= 2
        seq += [nn.Conv2d(c, c * 2, 4, 1, 1), nn.InstanceNorm2d(c * 2), nn.LeakyReLU(0.2, True),
                nn.Conv2d(c * 2, 1, 4, 1, 1)]
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# -- helpers ---------------------------------------------------------------------------------------
def bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy of logits against all-real or all-fake (AMP safe)."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def fixed_noise(index: torch.Tensor, dim: int, device: torch.device, salt: int = 0) -> torch.Tensor:
    """(B, dim) standard normal noise that depends only on each item's index (and
    ``salt``): the same z for the same validation item at every validation, without
    touching the global generator that training draws from."""
    rows = [torch.randn(dim, generator=torch.Generator().manual_seed(int(i) * 7919 + salt + 1))
            for i in index.tolist()]
    return torch.stack(rows).to(device) if rows else torch.zeros(0, dim, device=device)


def optimise_latent(render: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor,
                    z0: torch.Tensor, steps: int, lr: float = 0.05) -> torch.Tensor:
    """The first route to a latent code: gradient descent on z alone (the generator
    frozen) so that ``render(z)`` matches ``target`` in squared error. (B, z) -> (B, z).
    Only z receives gradients (``torch.autograd.grad``), so no weight's .grad changes."""
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            # a sum over images: z_i's gradient depends on image i alone, and Adam is per
            # coordinate, so each image's code does not depend on the batch it came in
            loss = (render(z).float() - target.float()).pow(2).sum()
            (grad,) = torch.autograd.grad(loss, z)
            z.grad = grad
            opt.step()
    return z.detach()


class TwoDomainModel(ZooModel):
    """Base of the ``translation`` task's models. ``predict(batch)`` returns a dict of
    (B, C, S, S) images in [-1, 1] under the keys of ``zoo.tasks.translation.IMAGE_KEYS``
    that the model produces; ``transform(images, direction)`` serves ``predict.py
    source=...`` for each of ``directions`` ("a2b", "b2a", "reconstruct")."""

    task = "translation"
    directions: ClassVar[tuple[str, ...]] = ()

    def transform(self, images: torch.Tensor, direction: str, route: str = "encoder") -> torch.Tensor:
        """(N, C, S, S) in [-1, 1] -> the same shape: translated (``a2b``/``b2a``) or
        reconstructed through the model's code (``reconstruct``); ``route`` picks how an
        inverting model finds the code (``encoder`` or ``optimise``)."""
        raise NotImplementedError

    def _check_direction(self, direction: str) -> None:
        """A UserError naming the directions the model does, unless it does ``direction``."""
        if direction not in self.directions:
            raise UserError(f"{type(self).__name__} cannot do direction={direction}; it does "
                            f"{', '.join(self.directions)}")

    @staticmethod
    def batch(batch: Any) -> Any:
        from zoo.data.two_domains import DomainBatch  # models read batches by field name

        return DomainBatch.of(batch)

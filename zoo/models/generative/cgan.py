"""Conditional GAN with an auxiliary classifier (Mirza & Osindero 2014; AC-GAN, Odena
et al. 2017): the class (one-hot) is concatenated to G's noise; D judges real/fake and
predicts the class. D learns the class on real images; G is rewarded when D takes its
image for real *and* for the class it was asked, so ``predict.py label=7`` draws a 7."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import UserError
from zoo.models.generative.base import AdversarialModel, bce_logits, dcgan_init
from zoo.models.generative.dcgan import check_size, dcgan_encoder, dcgan_generator


class ConditionalGAN(AdversarialModel):
    conditional = "labels"

    def __init__(self, *, num_classes: int = 10, channels: int = 1, image_size: int = 32,
                 latent_dim: int = 64, width: int = 32, class_weight: float = 1.0,
                 d_steps: int = 1) -> None:
        super().__init__(latent_dim=latent_dim, image=True, d_steps=d_steps)
        check_size(image_size)
        self.num_classes, self.class_weight = int(num_classes), float(class_weight)
        self.G = dcgan_generator(latent_dim + self.num_classes, channels, width)
        self.D = nn.ModuleDict({
            "body": nn.Sequential(dcgan_encoder(channels, width), nn.Flatten()),
            "adv": nn.Linear(width * 4 * 16, 1),
            "cls": nn.Linear(width * 4 * 16, self.num_classes)})
        dcgan_init(self)

    def decode(self, z: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if cond is None:
            cond = torch.randint(0, self.num_classes, (len(z),), device=z.device)
        return self.G(torch.cat([z, F.one_hot(cond, self.num_classes).to(z.dtype)], 1))

    def judge(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.D["body"](x)
        return self.D["adv"](h).squeeze(1), self.D["cls"](h)

    def condition_of(self, batch: Any) -> torch.Tensor:
        return batch[1].long()

    def fixed_condition(self, n: int) -> torch.Tensor:
        return torch.arange(n, device=self.fixed_noise.device) % self.num_classes

    def request(self, n: int, label: int | None = None, text: str | None = None) -> Any:
        if text is not None:
            raise UserError(f"{type(self).__name__} draws classes, not descriptions; use label=K")
        if label is None:
            return torch.arange(n) % self.num_classes
        if not 0 <= label < self.num_classes:
            raise UserError(f"label must be in 0..{self.num_classes - 1}, got {label}")
        return torch.full((n,), int(label), dtype=torch.int64)

    def d_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        real, y = self.to_net(batch[0]), batch[1].long()
        with torch.no_grad():
            asked = torch.randint(0, self.num_classes, (len(real),), device=real.device)
            fake = self.decode(self.latent(len(real)), asked)
        adv_r, cls_r = self.judge(real)
        adv_f, _ = self.judge(fake)
        return {"loss_d_real": bce_logits(adv_r, 1.0), "loss_d_fake": bce_logits(adv_f, 0.0),
                "loss_d_class": self.class_weight * F.cross_entropy(cls_r.float(), y)}

    def g_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        n = len(batch[0])
        asked = torch.randint(0, self.num_classes, (n,), device=batch[0].device)
        adv, cls = self.judge(self.decode(self.latent(n), asked))
        return {"loss_g": bce_logits(adv, 1.0),
                "loss_g_class": self.class_weight * F.cross_entropy(cls.float(), asked)}

"""Text-conditioned GAN with the matching-aware discriminator (GAN-CLS, Reed et al. 2016):
a text encoder turns the description into a code; G draws from noise and code;
D sees (image, code) and calls only (description, matching real image) real, while
(description, mismatched real image) and (description, generated image) are fake, so
it must check that the image shows what the words say, not only that it looks real.

The default encoder keeps each word in its slot (``text_encoder="positional"``; ``"gru"``
is the recurrent one); G gets the code concatenated to the noise and, with
``conditioning="cbn"``, as the scale/shift of every BatchNorm (conditional BatchNorm);
``projection`` adds the projection discriminator's <W code, features> term (Miyato &
Koyama 2018) to D's fused GAN-CLS score. ``attribute_weight`` > 0 adds AC-GAN's
auxiliary head on D predicting the scene's attributes (left/right colour and shape)
from the image, trained on real images, which G is also scored by."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import DataError, UserError
from zoo.models.generative.base import AdversarialModel, bce_logits, dcgan_init
from zoo.models.generative.dcgan import check_size, dcgan_encoder, dcgan_generator


class TextEncoder(nn.Module):
    """(B, T) word ids -> (B, dim) code: embeddings, a GRU, its last hidden state."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.rnn = nn.GRU(dim, dim, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(self.embed(tokens))
        return h[-1]


class PositionalTextEncoder(nn.Module):
    """(B, T) word ids -> (B, dim) code: each word's embedding kept in its slot, the T
    slots concatenated, then a two-layer MLP. Word order decides which shape is on the
    left ("X right of Y" puts Y there); keeping the slots lets one ReLU layer read it,
    where a GRU has to discover it from the adversarial signal alone."""

    def __init__(self, vocab_size: int, dim: int, length: int) -> None:
        super().__init__()
        self.length = int(length)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(self.length * dim, dim * 2), nn.ReLU(True),
                                 nn.Linear(dim * 2, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] != self.length:
            raise UserError(f"the text encoder reads {self.length} words, got {tokens.shape[1]}")
        return self.mlp(self.embed(tokens).flatten(1))


def text_encoder_of(kind: str, vocab_size: int, dim: int, length: int) -> nn.Module:
    if kind == "gru":
        return TextEncoder(vocab_size, dim)
    if kind == "positional":
        return PositionalTextEncoder(vocab_size, dim, length)
    raise UserError(f"model.text_encoder={kind} is not one of 'positional', 'gru'")


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own scale/shift; (1 + gamma(code), beta(code)) from the text
    code instead (de Vries et al. 2017, Miyato & Koyama 2018), so the description steers
    every resolution, not only the first layer's input."""

    def __init__(self, channels: int, code_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.film = nn.Linear(code_dim, channels * 2)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(code)[:, :, None, None].chunk(2, 1)
        return self.bn(x) * (1 + gamma) + beta


class ConditionalGenerator(nn.Module):
    """(B, Z) noise and (B, D) text code -> (B, C, 32, 32) in [-1, 1]: the DCGAN
    generator (1 -> 4 -> 8 -> 16 -> 32) with conditional BatchNorm after each up-step
    and the code also concatenated to the noise."""

    def __init__(self, latent_dim: int, code_dim: int, channels: int, width: int) -> None:
        super().__init__()
        widths = [latent_dim + code_dim, width * 4, width * 2, width]
        self.ups = nn.ModuleList(
            [nn.ConvTranspose2d(widths[0], widths[1], 4, 1, 0, bias=False)]
            + [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1, bias=False) for i in (1, 2)])
        self.norms = nn.ModuleList([ConditionalBatchNorm(w, code_dim) for w in widths[1:]])
        self.out = nn.ConvTranspose2d(width, channels, 4, 2, 1)

    def forward(self, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, code], 1)[:, :, None, None]
        for up, norm in zip(self.ups, self.norms):
            h = F.relu(norm(up(h), code))
        return torch.tanh(self.out(h))


class TextGAN(AdversarialModel):
    conditional = "text"

    def __init__(self, *, vocab_size: int, attribute_sizes: list[int], channels: int = 3,
                 image_size: int = 32, latent_dim: int = 64, text_dim: int = 64, width: int = 32,
                 mismatch_weight: float = 0.5, attribute_weight: float = 1.0, d_steps: int = 1,
                 text_encoder: str = "positional", text_length: int = 6,
                 conditioning: str = "cbn", projection: bool = True) -> None:
        super().__init__(latent_dim=latent_dim, image=True, d_steps=d_steps)
        check_size(image_size)
        if conditioning not in ("cbn", "concat"):
            raise UserError(f"model.conditioning={conditioning} is not one of 'cbn', 'concat'")
        self.attribute_sizes = [int(a) for a in attribute_sizes]
        self.mismatch_weight, self.attribute_weight = float(mismatch_weight), float(attribute_weight)
        self.conditioning, self.projection = conditioning, bool(projection)
        net = (ConditionalGenerator(latent_dim, text_dim, channels, width) if conditioning == "cbn"
               else dcgan_generator(latent_dim + text_dim, channels, width))
        self.G = nn.ModuleDict({"text": text_encoder_of(text_encoder, vocab_size, text_dim, text_length),
                                "net": net})
        self.D = nn.ModuleDict({
            "text": text_encoder_of(text_encoder, vocab_size, text_dim, text_length),
            "body": dcgan_encoder(channels, width),
            # the text code replicated over D's 4x4 map, fused by a 1x1 conv (GAN-CLS)
            "joint": nn.Sequential(nn.Conv2d(width * 4 + text_dim, width * 4, 1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(width * 4, 1, 4, 1, 0), nn.Flatten(0)),
            "attr": nn.Linear(width * 4 * 16, sum(self.attribute_sizes))})
        if self.projection:
            # projection D (Miyato & Koyama 2018): + <W t, sum of D's features>
            self.D["proj"] = nn.Linear(text_dim, width * 4, bias=False)
        dcgan_init(self)
        # the fixed grid draws a fixed set of scenes: one description per row of 4
        g = torch.Generator().manual_seed(4321)
        self.register_buffer("fixed_scenes", torch.stack(
            [torch.randint(0, k, (self.num_fixed,), generator=g) for k in self.attribute_sizes], 1))

    # conditions are (tokens (B, T), attributes (B, 4)); the attributes are only scored
    def decode(self, z: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if cond is None:
            raise UserError("a text-conditioned GAN needs a description (text=...)")
        code = self.G["text"](cond[0])
        if self.conditioning == "cbn":
            return self.G["net"](z, code)
        return self.G["net"](torch.cat([z, code], 1))

    def condition_of(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return batch[1], batch[2]

    def asked(self, cond: Any) -> dict[str, torch.Tensor]:
        return {"attributes": cond[1]}

    def scenes(self, attributes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from zoo.data.generative import describe, encode_description

        tokens = torch.stack([encode_description(describe(a)) for a in attributes.tolist()])
        return tokens.to(attributes.device), attributes

    def fixed_condition(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scenes(self.fixed_scenes[:n])

    def request(self, n: int, label: int | None = None, text: str | None = None) -> Any:
        from zoo.data.generative import encode_description, parse_description

        if label is not None:
            raise UserError(f"{type(self).__name__} draws descriptions, not classes; use text=...")
        if text is None:
            g = torch.Generator().manual_seed(0)
            return self.scenes(torch.stack([torch.randint(0, k, (n,), generator=g)
                                            for k in self.attribute_sizes], 1))
        try:
            tokens, attrs = encode_description(text), parse_description(text)
        except DataError as e:
            raise UserError(str(e)) from None
        return tokens.expand(n, -1).clone(), attrs.expand(n, -1).clone()

    def judge(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.D["body"](x)  # (B, 4w, 4, 4)
        code = self.D["text"](tokens)  # (B, text_dim)
        t = code[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
        score = self.D["joint"](torch.cat([h, t], 1))  # (B,)
        if self.projection:
            score = score + (self.D["proj"](code) * h.sum((2, 3))).sum(1)
        return score, self.D["attr"](h.flatten(1))

    def attribute_loss(self, logits: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        parts = torch.split(logits.float(), self.attribute_sizes, dim=1)
        return sum(F.cross_entropy(p, attributes[:, i]) for i, p in enumerate(parts)) / len(parts)

    def d_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        real, tokens, attrs = self.to_net(batch[0]), batch[1], batch[2]
        with torch.no_grad():
            fake = self.decode(self.latent(len(real)), (tokens, attrs))
        mismatched = real.roll(1, 0)  # another scene's image beside this description
        s_real, a_real = self.judge(real, tokens)
        s_wrong, _ = self.judge(mismatched, tokens)
        s_fake, _ = self.judge(fake, tokens)
        w = self.mismatch_weight
        out = {"loss_d_real": bce_logits(s_real, 1.0),
               "loss_d_mismatch": w * bce_logits(s_wrong, 0.0),
               "loss_d_fake": (1 - w) * bce_logits(s_fake, 0.0)}
        if self.attribute_weight > 0:
            out["loss_d_attr"] = self.attribute_weight * self.attribute_loss(a_real, attrs)
        return out

    def g_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        tokens, attrs = batch[1], batch[2]
        fake = self.decode(self.latent(len(tokens)), (tokens, attrs))
        score, a = self.judge(fake, tokens)
        out = {"loss_g": bce_logits(score, 1.0)}
        if self.attribute_weight > 0:
            out["loss_g_attr"] = self.attribute_weight * self.attribute_loss(a, attrs)
        return out

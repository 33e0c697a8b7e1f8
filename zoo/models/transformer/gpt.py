"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019)."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.batches import TokenBatch
from zoo.data.tokenizers import TokenizerSlot
from zoo.errors import UserError, choices
from zoo.layers.attention import TransformerBlock, causal_mask
from zoo.layers.decoding import sample_next
from zoo.models.base import ZooModel
from zoo.models.sequence.generation import TextGenerator

# ``gelu`` is the exact erf form; ``gelu_tanh`` the tanh approximation GPT-2 was trained
# with (transformers' "gelu_new"), needed to reproduce GPT-2's logits to 1e-5.
GPT_ACTIVATIONS = ("gelu", "gelu_tanh")


class GPT(TextGenerator, ZooModel):
    """GPT-2-style decoder-only Transformer: token + learned position embeddings, pre-norm
    causal blocks with GELU, a final LayerNorm, and an output layer tied to the token
    embedding (Press & Wolf 2017). Generation keeps every layer's keys and values (a KV
    cache), so each new token costs one position instead of the whole context.

    ``activation``, ``norm_eps``, ``ff_dim`` (None: 4 x n_embd) and ``tie_embeddings``
    cover what GPT-2 checkpoints vary in, so ``zoo.interop`` loads them exactly.
    """

    def __init__(self, *, vocab_size: int, block_size: int = 128, n_layer: int = 4,
                 n_head: int = 4, n_embd: int = 128, dropout: float = 0.0, bias: bool = True,
                 activation: str = "gelu", norm_eps: float = 1e-5, ff_dim: int | None = None,
                 tie_embeddings: bool = True) -> None:
        super().__init__()
        if activation not in GPT_ACTIVATIONS:
            raise UserError(f"unknown GPT activation '{activation}'; valid: "
                            f"{choices(GPT_ACTIVATIONS)}")
        self.vocab_size, self.block_size = vocab_size, block_size
        self.activation, self.norm_eps, self.tie_embeddings = activation, float(norm_eps), tie_embeddings
        ff_dim = int(ff_dim) if ff_dim else 4 * n_embd
        norm = functools.partial(nn.LayerNorm, eps=self.norm_eps)
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(n_embd, n_head, ff_dim, dropout, norm_first=True,
                             activation="gelu", bias=bias, norm=norm) for _ in range(n_layer))
        if activation == "gelu_tanh":
            for block in self.blocks:
                block.ff.net[1] = nn.GELU(approximate="tanh")  # no weights: keys unchanged
        self.ln_f = norm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight  # tied: one matrix reads and writes tokens
        self.tokenizer_slot = TokenizerSlot()
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * layers) so the residual
        # stream's variance does not grow with depth
        for name, p in self.named_parameters():
            if name.endswith(("out_proj.weight", "ff.net.3.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor, caches: list[dict] | None = None) -> torch.Tensor:
        """ids (B, T) -> logits (B, T, V). With ``caches`` (one dict per layer) the ids
        continue the cached positions and the caches are extended."""
        _B, T = ids.shape
        start = caches[0]["k"].shape[2] if caches and "k" in caches[0] else 0
        if start + T > self.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.block_size}")
        pos = torch.arange(start, start + T, device=ids.device)
        x = self.drop(self.tok_emb(ids) + self.pos_emb(pos))             # (B, T, D)
        mask = causal_mask(T, start + T, ids.device)                      # (T, start+T)
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, cache=None if caches is None else caches[i])
        return self.lm_head(self.ln_f(x))

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        x, y = TokenBatch.of(batch)
        logits = self(x)
        return {"loss": F.cross_entropy(logits.reshape(-1, self.vocab_size), y.reshape(-1))}

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self(TokenBatch.of(batch).inputs)

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True
                 ) -> torch.Tensor:
        """Continue ids (B, T0) by ``max_new_tokens`` sampled tokens -> (B, T0 + new).

        The model sees at most the last ``block_size`` tokens. With the cache, the prompt
        is run once and every later step feeds only the newest token; once the context
        slides past ``block_size`` every position changes, so the window is recomputed
        exactly as without a cache.
        """
        was_training = self.training
        self.eval()
        out = ids
        caches: list[dict] | None = None
        for _ in range(max_new_tokens):
            window = out[:, -self.block_size:]
            if not use_cache or out.shape[1] > self.block_size:
                logits = self(window)
            elif caches is None:
                caches = [{} for _ in self.blocks]
                logits = self(window, caches)                              # prefill
            else:
                logits = self(out[:, -1:], caches)                         # one new position
            nxt = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
            out = torch.cat([out, nxt[:, None]], dim=1)
        self.train(was_training)
        return out

"""Multi-head Latent Attention (DeepSeek-V2, 2024) and rotary multi-head / grouped-query
attention, the attention layers of the ``deepseek`` model.

MLA compresses each token's keys and values into one low-rank latent ``c_kv``
(``kv_lora_rank`` wide, RMS-normalised) from which every head's key and value are
rebuilt by ``kv_b_proj``; position enters only through a separate rotary key
``k_rope`` (``qk_rope_dim`` wide) shared by all heads, because a rotation between the
query and the key would stop ``W_UK`` from being folded into the query. The cache keeps
``c_kv`` and ``k_rope`` per token: ``kv_lora_rank + qk_rope_dim`` numbers per layer
instead of MHA's ``2 * heads * head_dim``.

Two inference paths compute the same function:

- naive: rebuild k_nope, v (B, h, S, nope|v) from the cached latent, then attention;
- absorbed: q_lat = q_nope · W_UK (B, h, T, r), scores = (q_lat · c_kvᵀ + q_rope ·
  k_ropeᵀ) · (nope + rope)^-½, output = (softmax · c_kv) · W_UVᵀ, never materialising
  per-head keys or values.

Caches are dicts of tensors whose sequence axis is -2 (``cache_length``,
``trim_cache``), so a decoder trims them the same way whatever the attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers import Example, _randn
from zoo.layers.attention import attention, causal_mask
from zoo.layers.rotary import apply_rotary, rotary_tables
from zoo.registry import buildable


def cache_length(cache: dict[str, torch.Tensor] | None) -> int:
    """Positions a cache holds (0 for None or an empty dict)."""
    if not cache:
        return 0
    return next(iter(cache.values())).shape[-2]


def trim_cache(cache: dict[str, torch.Tensor], length: int) -> None:
    """Keep the first ``length`` positions (drop rejected draft tokens)."""
    for k, v in cache.items():
        cache[k] = v[..., :length, :]


def _append(cache: dict[str, torch.Tensor] | None, **new: torch.Tensor) -> dict[str, torch.Tensor]:
    if cache is None:
        return new
    for k, v in new.items():
        cache[k] = torch.cat([cache[k], v], dim=-2) if k in cache else v
    return {k: cache[k] for k in new}


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
            dropout_p: float, training: bool, scale: float | None = None) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) v with torch's fused kernel: q (B, h, T, d), k (B, h|1,
    S, d), v (B, h|1, S, dv) -> (B, h, T, dv); scale defaults to d^-½. A mask with a query
    row that may see no key goes to the written-out ``attention`` (zeros there, where the
    fused kernel is not promised to be). The fused kernel does not build the (T, S) weights
    and their masked copies, about a third of a CPU training step at 64 tokens."""
    p = dropout_p if training else 0.0
    if mask is not None and not bool(mask.any(dim=-1).all()):
        if scale is not None:
            q = q * (scale * math.sqrt(q.shape[-1]))
        return attention(q, k.expand(-1, q.shape[1], -1, -1), v.expand(-1, q.shape[1], -1, -1),
                         mask, p, training)
    if k.shape[1] != q.shape[1]:
        k, v = k.expand(-1, q.shape[1], -1, -1), v.expand(-1, q.shape[1], -1, -1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=scale)


@buildable
class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019): x / sqrt(mean(x²) + eps) · w, computed
    in float32 at least, no centring and no bias."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)

    @classmethod
    def example(cls) -> Example:
        return Example(cls(8), (_randn(2, 3, 8),), (2, 3, 8))


@buildable
class MultiHeadLatentAttention(nn.Module):
    """Multi-head Latent Attention (DeepSeek-V2/V3): low-rank joint key-value compression,
    a decoupled rotary key shared by the heads, optional low-rank queries (``q_lora_rank``).

    ``forward(x (B, T, D), mask, cache)``: ``mask`` (T, start + T) "may attend"; ``cache``
    a dict receiving ``c_kv`` (B, S, r) and ``k_rope`` (B, S, rope); positions continue
    the cached ones. ``absorb``: "auto" (absorbed when decoding from a cache in eval mode,
    naive otherwise), "naive" or "absorbed".
    """

    def __init__(self, dim: int, num_heads: int, kv_lora_rank: int, qk_nope_dim: int,
                 qk_rope_dim: int, v_head_dim: int, q_lora_rank: int | None = None,
                 rope_base: float = 10000.0, dropout: float = 0.0, bias: bool = False,
                 absorb: str = "auto", norm_eps: float = 1e-6) -> None:
        super().__init__()
        if absorb not in ("auto", "naive", "absorbed"):
            raise ValueError(f"absorb must be auto, naive or absorbed, got {absorb!r}")
        self.num_heads, self.kv_lora_rank, self.q_lora_rank = num_heads, kv_lora_rank, q_lora_rank
        self.nope, self.rope, self.v_dim = qk_nope_dim, qk_rope_dim, v_head_dim
        self.rope_base, self.dropout, self.absorb = rope_base, dropout, absorb
        q_out = num_heads * (qk_nope_dim + qk_rope_dim)
        if q_lora_rank is None:
            self.q_proj = nn.Linear(dim, q_out, bias=False)
        else:
            self.q_a_proj = nn.Linear(dim, q_lora_rank, bias=bias)
            self.q_a_norm = RMSNorm(q_lora_rank, norm_eps)
            self.q_b_proj = nn.Linear(q_lora_rank, q_out, bias=False)
        self.kv_a_proj = nn.Linear(dim, kv_lora_rank + qk_rope_dim, bias=bias)
        self.kv_a_norm = RMSNorm(kv_lora_rank, norm_eps)
        self.kv_b_proj = nn.Linear(kv_lora_rank, num_heads * (qk_nope_dim + v_head_dim), bias=False)
        self.o_proj = nn.Linear(num_heads * v_head_dim, dim, bias=bias)
        self.scale = (qk_nope_dim + qk_rope_dim) ** -0.5

    def cache_bytes_per_token(self, dtype: torch.dtype = torch.float32) -> int:
        return (self.kv_lora_rank + self.rope) * torch.empty((), dtype=dtype).element_size()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cache: dict[str, torch.Tensor] | None = None, absorb: str | None = None
                ) -> torch.Tensor:
        B, T, _ = x.shape
        H = self.num_heads
        start = cache_length(cache)
        q = self.q_proj(x) if self.q_lora_rank is None else self.q_b_proj(self.q_a_norm(self.q_a_proj(x)))
        q = q.view(B, T, H, self.nope + self.rope).transpose(1, 2)             # (B, h, T, nope+rope)
        q_nope, q_rope = q.split([self.nope, self.rope], dim=-1)
        c_kv, k_rope = self.kv_a_proj(x).split([self.kv_lora_rank, self.rope], dim=-1)
        c_kv = self.kv_a_norm(c_kv)                                             # (B, T, r)
        pos = torch.arange(start, start + T, device=x.device)
        cos, sin = rotary_tables(self.rope, pos, self.rope_base,
                                 torch.float64 if x.dtype == torch.float64 else torch.float32)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        q_rope, k_rope = apply_rotary(q_rope, cos, sin), apply_rotary(k_rope, cos, sin)
        kv = _append(cache, c_kv=c_kv, k_rope=k_rope)
        c_kv, k_rope = kv["c_kv"], kv["k_rope"]                                 # (B, S, r), (B, S, rope)
        mode = absorb or self.absorb
        if mode == "auto":
            mode = "absorbed" if cache is not None and not self.training else "naive"
        w = self.kv_b_proj.weight.view(H, self.nope + self.v_dim, self.kv_lora_rank)
        p = self.dropout if self.training else 0.0
        if mode == "naive":
            S = c_kv.shape[1]
            kv_full = self.kv_b_proj(c_kv).view(B, S, H, self.nope + self.v_dim).transpose(1, 2)
            k_nope, v = kv_full.split([self.nope, self.v_dim], dim=-1)          # (B, h, S, nope|v)
            k = torch.cat([k_nope, k_rope[:, None].expand(B, H, S, self.rope)], dim=-1)
            y = _attend(torch.cat([q_nope, q_rope], dim=-1), k, v, mask, p, self.training)
        else:
            w_uk, w_uv = w[:, : self.nope], w[:, self.nope:]                   # (h, nope, r), (h, v, r)
            q_lat = torch.einsum("bhtn,hnr->bhtr", q_nope, w_uk)               # (B, h, T, r)
            # the scores need (nope + rope)^-1/2, not (r + rope)^-1/2
            q_abs = torch.cat([q_lat, q_rope], dim=-1)
            k_abs = torch.cat([c_kv, k_rope], dim=-1)[:, None]                  # (B, 1, S, r+rope)
            o_lat = _attend(q_abs, k_abs, c_kv[:, None], mask, p, self.training, self.scale)  # (B, h, T, r)
            y = torch.einsum("bhtr,hvr->bhtv", o_lat, w_uv)                     # (B, h, T, v)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * self.v_dim))

    @classmethod
    def example(cls) -> Example:
        return Example(cls(16, 2, 8, 4, 4, 6, q_lora_rank=6), (_randn(2, 5, 16),), (2, 5, 16),
                       {"mask": causal_mask(5, 5)})


@buildable
class RotaryAttention(nn.Module):
    """Multi-head attention with rotary positions; ``num_kv_heads`` < ``num_heads`` is
    grouped-query attention (Ainslie et al. 2023: each key/value head serves
    ``num_heads / num_kv_heads`` query heads), 1 is multi-query attention. The cache keeps
    keys (after rotation) and values, ``2 * num_kv_heads * head_dim`` numbers per token."""

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int | None = None,
                 rope_base: float = 10000.0, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        num_kv_heads = num_kv_heads or num_heads
        if dim % num_heads or num_heads % num_kv_heads:
            raise ValueError(f"dim {dim}, heads {num_heads}, kv heads {num_kv_heads} do not divide")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, dim // num_heads
        self.rope_base, self.dropout = rope_base, dropout
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(dim, dim, bias=bias)

    def cache_bytes_per_token(self, dtype: torch.dtype = torch.float32) -> int:
        return 2 * self.num_kv_heads * self.head_dim * torch.empty((), dtype=dtype).element_size()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, D = x.shape
        start = cache_length(cache)
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        pos = torch.arange(start, start + T, device=x.device)
        cos, sin = rotary_tables(self.head_dim, pos, self.rope_base,
                                 torch.float64 if x.dtype == torch.float64 else torch.float32)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        kv = _append(cache, k=k, v=v)
        k, v = kv["k"], kv["v"]                                                 # (B, kvh, S, hs)
        rep = self.num_heads // self.num_kv_heads
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = _attend(q, k, v, mask, self.dropout, self.training)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, D))

    @classmethod
    def example(cls) -> Example:
        return Example(cls(8, 4, 2), (_randn(2, 5, 8),), (2, 5, 8), {"mask": causal_mask(5, 5)})

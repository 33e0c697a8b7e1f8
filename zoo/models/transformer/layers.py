"""Attention blocks shared by the Transformer, GPT and BERT ("Attention Is All You Need",
Vaswani et al. 2017).

Masks are boolean and mean "may attend" (True = keep), broadcastable to
(B, heads, T_query, T_key), the convention of ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, training: bool = False) -> torch.Tensor:
    """Scaled dot-product attention written out: softmax(q kᵀ / sqrt(d) + mask) v.

    q (B, h, Tq, d), k and v (B, h, Tk, d) -> (B, h, Tq, d). Dividing by sqrt(d) keeps
    the logits' variance near 1 so the softmax does not saturate (and its gradient vanish)
    as the head size grows.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])   # (B, h, Tq, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    if dropout_p > 0 and training:
        weights = F.dropout(weights, dropout_p)
    return weights @ v


def causal_mask(t_query: int, t_key: int, device: torch.device | None = None) -> torch.Tensor:
    """(Tq, Tk) bool: the queries are the last Tq of Tk positions (a cache holds the first
    Tk - Tq), and query i may see keys up to its own absolute position Tk - Tq + i."""
    offset = t_key - t_query
    q_pos = torch.arange(t_query, device=device)[:, None] + offset
    return torch.arange(t_key, device=device)[None, :] <= q_pos


def padding_mask(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """ids (B, T) -> (B, 1, 1, T) bool, False on padding keys."""
    return (ids != pad_id)[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """Multi-head attention: h independent learned projections of queries, keys and values,
    attention in each (B, h, T, d/h), heads concatenated and projected back.

    ``cache``: a dict that receives this layer's keys/values (B, h, T, d/h) under ``"k"``
    and ``"v"``; on later calls the new keys/values are appended, so generation feeds one
    new token at a time (self-attention only).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, T, hs)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, cache: dict[str, torch.Tensor] | None = None
                ) -> torch.Tensor:
        """x (B, Tq, D) queries; context (B, Tk, D) keys/values (None: self-attention)."""
        src = x if context is None else context
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(src)), self._heads(self.v_proj(src))
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        y = attention(q, k, v, mask, self.dropout, self.training)      # (B, h, Tq, hs)
        B, _, Tq, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(B, Tq, -1))


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear(d, ff) -> activation -> Linear(ff, d)."""

    def __init__(self, dim: int, hidden: int, activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), ACTIVATIONS[activation](),
                                 nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """One Transformer layer: self-attention, optional cross-attention to an encoder's
    output, and a feed-forward network, each wrapped in a residual connection and
    LayerNorm.

    ``norm_first=False`` is the paper's post-norm ``LN(x + sublayer(x))`` (Transformer,
    BERT); ``norm_first=True`` the pre-norm ``x + sublayer(LN(x))`` of GPT-2, which trains
    deep stacks without warm-up tricks.
    """

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float = 0.0,
                 norm_first: bool = False, activation: str = "relu",
                 cross_attention: bool = False, bias: bool = True) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout, bias)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MultiHeadAttention(dim, num_heads, dropout, bias) if cross_attention else None
        self.norm2 = nn.LayerNorm(dim) if cross_attention else None
        self.ff = FeedForward(dim, ff_dim, activation, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def _residual(self, x: torch.Tensor, norm: nn.Module, fn) -> torch.Tensor:
        if self.norm_first:
            return x + self.drop(fn(norm(x)))
        return norm(x + self.drop(fn(x)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
                cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """x (B, T, D); mask for self-attention; context (B, S, D) with context_mask."""
        x = self._residual(x, self.norm1, lambda h: self.self_attn(h, mask=mask, cache=cache))
        if self.cross_attn is not None:
            x = self._residual(x, self.norm2,
                               lambda h: self.cross_attn(h, context, mask=context_mask))
        return self._residual(x, self.norm3, self.ff)


class SinusoidalPositions(nn.Module):
    """Fixed position encodings PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(...):
    every relative offset is a linear function of the encoding, and no parameters."""

    def __init__(self, dim: int, max_len: int = 512) -> None:
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(pos * freq)
        pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
        self.register_buffer("pe", pe, persistent=False)  # (max_len, D)

    def forward(self, length: int, start: int = 0) -> torch.Tensor:
        if start + length > self.pe.shape[0]:
            raise ValueError(f"position {start + length} beyond max_len {self.pe.shape[0]}")
        return self.pe[start: start + length]  # (T, D)

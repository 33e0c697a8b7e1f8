"""Attention and the Transformer block ("Attention Is All You Need", Vaswani et al. 2017),
shared by the encoder-decoder Transformer, GPT and BERT.

Masks are boolean and mean "may attend" (True = keep), broadcastable to
(B, heads, T_query, T_key), the convention of ``F.scaled_dot_product_attention``. A
query whose keys are all masked attends to nothing and gets zeros, as torch's SDPA
returns (not the NaN of a softmax over only ``-inf``).

``TransformerBlock`` takes its attention and feed-forward as modules (``attn=``,
``ffn=``), so multi-head latent attention or a mixture-of-experts layer replaces the
defaults without a new block.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers import Example, _randn
from zoo.registry import buildable

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, training: bool = False) -> torch.Tensor:
    """Scaled dot-product attention written out: softmax(q kᵀ / sqrt(d) + mask) v.

    q (B, h, Tq, d), k and v (B, h, Tk, d) -> (B, h, Tq, d). Dividing by sqrt(d) keeps
    the logits' variance near 1 so the softmax does not saturate (and its gradient vanish)
    as the head size grows. A query row with no key allowed returns zeros (and passes
    zero gradient), where a softmax over ``-inf`` alone would give NaN.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])   # (B, h, Tq, Tk)
    if mask is None:
        weights = scores.softmax(dim=-1)
    else:
        alive = mask.any(dim=-1, keepdim=True)                   # (..., Tq, 1)
        # an empty row is opened to every key for the softmax, then zeroed
        weights = scores.masked_fill(~(mask | ~alive), float("-inf")).softmax(dim=-1)
        weights = weights.masked_fill(~alive, 0.0)
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


@buildable
class MultiHeadAttention(nn.Module):
    """Multi-head attention: h independent learned projections of queries, keys and values,
    attention in each (B, h, T, d/h), heads concatenated and projected back.

    ``cache``: a dict that receives this layer's keys/values (B, h, T, d/h) under ``"k"``
    and ``"v"``; on later calls the new keys/values are appended, so generation feeds one
    new token at a time (self-attention only).

    ``fused=True`` runs torch's ``F.scaled_dot_product_attention`` (flash or
    memory-efficient kernels on a GPU, which never materialise the (Tq, Tk) weights);
    ``fused=False`` runs the written-out ``attention`` above, the formula of the notes,
    which the tests hold the fused kernel to. Both give zeros for a query with no key.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 fused: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.fused = fused
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
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               dropout_p=self.dropout if self.training else 0.0)
        else:
            y = attention(q, k, v, mask, self.dropout, self.training)  # (B, h, Tq, hs)
        B, _, Tq, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(B, Tq, -1))

    @classmethod
    def example(cls) -> Example:
        return Example(cls(8, 2), (_randn(2, 5, 8),), (2, 5, 8), {"mask": causal_mask(5, 5)})


@buildable
class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear(d, ff) -> activation -> Linear(ff, d)."""

    def __init__(self, dim: int, hidden: int, activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), ACTIVATIONS[activation](),
                                 nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @classmethod
    def example(cls) -> Example:
        return Example(cls(8, 16, "gelu"), (_randn(2, 3, 8),), (2, 3, 8))


@buildable
class TransformerBlock(nn.Module):
    """One Transformer layer: self-attention, optional cross-attention to an encoder's
    output, and a feed-forward network, each wrapped in a residual connection and a norm.

    ``norm_first=False`` is the paper's post-norm ``LN(x + sublayer(x))`` (Transformer,
    BERT); ``norm_first=True`` the pre-norm ``x + sublayer(LN(x))`` of GPT-2, which trains
    deep stacks without warm-up tricks.

    Injectable parts (defaults in brackets): ``attn`` [``MultiHeadAttention(dim,
    num_heads)``], called as ``attn(h, mask=..., cache=...)``; ``cross_attn`` [the same,
    when ``cross_attention``], called as ``cross_attn(h, context, mask=...)``; ``ffn``
    [``FeedForward(dim, ff_dim, activation)``], any (B, T, D) -> (B, T, D) module (a
    mixture of experts keeps its balancing loss on itself); ``norm`` [LayerNorm], a
    factory from the width. ``num_heads`` and ``ff_dim`` are needed only for the parts
    that are not given.
    """

    def __init__(self, dim: int, num_heads: int | None = None, ff_dim: int | None = None,
                 dropout: float = 0.0, norm_first: bool = False, activation: str = "relu",
                 cross_attention: bool = False, bias: bool = True, *,
                 attn: nn.Module | None = None, ffn: nn.Module | None = None,
                 cross_attn: nn.Module | None = None,
                 norm: Callable[[int], nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        if (attn is None or (cross_attention and cross_attn is None)) and num_heads is None:
            raise ValueError("TransformerBlock needs num_heads for its default attention")
        if ffn is None and ff_dim is None:
            raise ValueError("TransformerBlock needs ff_dim for its default feed-forward network")
        self.norm_first = norm_first
        # attribute names and creation order fix the state-dict keys (and the random init)
        self.self_attn = attn if attn is not None else MultiHeadAttention(dim, num_heads, dropout, bias)
        self.norm1 = norm(dim)
        if cross_attention or cross_attn is not None:
            self.cross_attn = (cross_attn if cross_attn is not None
                               else MultiHeadAttention(dim, num_heads, dropout, bias))
            self.norm2 = norm(dim)
        else:
            self.cross_attn = self.norm2 = None
        self.ff = ffn if ffn is not None else FeedForward(dim, ff_dim, activation, dropout)
        self.norm3 = norm(dim)
        self.drop = nn.Dropout(dropout)

    def _residual(self, x: torch.Tensor, norm: nn.Module, fn: Callable) -> torch.Tensor:
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

    @classmethod
    def example(cls) -> Example:
        return Example(cls(8, 2, 16, norm_first=True, cross_attention=True), (_randn(2, 5, 8),),
                       (2, 5, 8), {"mask": causal_mask(5, 5), "context": _randn(2, 3, 8)})


@buildable
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

    @classmethod
    def example(cls) -> Example:
        return Example(cls(6, 20), (7,), (7, 6), {"start": 3})

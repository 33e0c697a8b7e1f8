"""Rotary position embedding (RoFormer, Su et al. 2021) in the "rotate half" layout.

The rotated part of a vector of even size r is read as r/2 pairs ``(x[j], x[j + r/2])``;
pair j turns by the angle ``p * base^(-2j/r)`` at position p, so a query-key dot product
depends only on the offset between their positions. (A checkpoint that interleaves the
pairs as ``(x[2j], x[2j+1])`` is the same model with its projection rows permuted; see
``interleaved_to_half``.)
"""

from __future__ import annotations

import torch


def rotary_tables(dim: int, positions: torch.Tensor, base: float = 10000.0,
                  dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """positions (T,) int -> cos, sin (T, dim), each frequency repeated in both halves."""
    if dim % 2:
        raise ValueError(f"the rotary dimension must be even, got {dim}")
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]          # (T, dim/2)
    emb = torch.cat([freqs, freqs], dim=-1)                          # (T, dim)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (..., T, dim) with cos/sin (T, dim) -> x rotated by its position."""
    return x * cos + rotate_half(x) * sin


def interleaved_to_half(dim: int) -> torch.Tensor:
    """The row order that turns an interleaved-pair rotary projection into this layout:
    even rows first, then odd rows."""
    return torch.cat([torch.arange(0, dim, 2), torch.arange(1, dim, 2)])

"""Moved to :mod:`zoo.layers.attention`; these names stay importable for old code."""

from zoo.layers.attention import (
    ACTIVATIONS,
    FeedForward,
    MultiHeadAttention,
    SinusoidalPositions,
    TransformerBlock,
    attention,
    causal_mask,
    padding_mask,
)

__all__ = ["ACTIVATIONS", "FeedForward", "MultiHeadAttention", "SinusoidalPositions",
           "TransformerBlock", "attention", "causal_mask", "padding_mask"]

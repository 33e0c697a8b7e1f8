"""Moved to :mod:`zoo.layers.pooling`; this name stays importable for old code."""

from zoo.layers.pooling import SpatialPyramidPooling

__all__ = ["SpatialPyramidPooling"]

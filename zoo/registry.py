"""What a config may build.

A config is code: a ``_target_`` read from a run directory someone else made must not
call anything the zoo did not mean configs to build. Classes opt in with
``@buildable`` (or by subclassing a base that is registered); ``zoo.engine.config``
refuses every other target, at any depth.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", bound=type)

_BUILDABLE: set[type] = set()


def buildable(cls: T) -> T:
    """Mark ``cls`` (and its subclasses) as a class configs may build."""
    _BUILDABLE.add(cls)
    return cls


def is_buildable(obj: object) -> bool:
    """True for a class that is, or subclasses, a class marked ``@buildable``."""
    return isinstance(obj, type) and any(issubclass(obj, base) for base in _BUILDABLE)

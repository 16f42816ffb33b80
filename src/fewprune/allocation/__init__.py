"""Allocation: scores + Target → removed units per group."""

from . import evolution, strategies  # noqa: F401  (registration)
from .base import Target, TargetUnreachable, allocate, allocators, lowest, reduction, register_allocator
from .evolution import differential_evolution

__all__ = ["Target", "TargetUnreachable", "allocate", "allocators", "differential_evolution", "lowest", "reduction",
           "register_allocator"]

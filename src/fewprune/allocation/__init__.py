"""Allocation: scores + Target → removed units per group."""

from . import strategies  # noqa: F401  (registration)
from .base import Target, TargetUnreachable, allocate, allocators, lowest, reduction, register_allocator

__all__ = ["Target", "TargetUnreachable", "allocate", "allocators", "lowest", "reduction", "register_allocator"]

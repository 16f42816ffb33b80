"""Allocation: scores + Target → removed units per group."""

from . import evolution, iterative, strategies  # noqa: F401  (registration)
from .base import (
                   StoppedShort,
                   Target,
                   TargetUnreachable,
                   allocate,
                   allocators,
                   channel_block,
                   lowest,
                   reduction,
                   register_allocator,
                   resolve_round_to,
)
from .evolution import differential_evolution
from .iterative import Probe, class_averaged_auc, harmonic_mean
from .paths import shared_paths

__all__ = ["Probe", "StoppedShort", "Target", "TargetUnreachable", "allocate", "allocators", "channel_block",
           "class_averaged_auc", "differential_evolution", "harmonic_mean", "lowest", "reduction", "register_allocator",
           "resolve_round_to", "shared_paths"]

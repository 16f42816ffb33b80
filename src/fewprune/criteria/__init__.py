"""Criteria: one importance score per unit of every prunable group, by name."""

from . import blocks, concept_mask, magnitude, taylor  # noqa: F401  (registration)
from .base import Batch, Scores, criteria, reduce_slices, register_criterion

__all__ = ["Batch", "Scores", "criteria", "reduce_slices", "register_criterion"]

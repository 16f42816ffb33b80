"""Criteria: one importance score per unit of every prunable group, by name."""

from . import asca, blocks, causal, concept_mask, lrp, magnitude, taylor  # noqa: F401  (registration)
from .base import Batch, Scores, criteria, reduce_slices, register_criterion, teacher_predictions

__all__ = ["Batch", "Scores", "criteria", "reduce_slices", "register_criterion", "teacher_predictions"]

"""Data-free baselines: weight magnitude (L1, L2), batch-norm scale, random."""

from __future__ import annotations

import torch

from ..structure import Group, PruningSpace
from .base import Batch, Scores, reduce_slices, register_criterion


@register_criterion("l1")
def l1(model, space: PruningSpace, batch: Batch) -> Scores:
    """Mean L1 norm of each unit's weights over the coupled layers that produce it (``out`` slices)."""
    return {g.id: reduce_slices(model, g, lambda v: v.abs().sum(), roles=("out",)) for g in space.prunable}


@register_criterion("l2")
def l2(model, space: PruningSpace, batch: Batch) -> Scores:
    """Mean L2 norm of each unit's producing weights."""
    return {g.id: reduce_slices(model, g, lambda v: v.pow(2).sum().sqrt(), roles=("out",)) for g in space.prunable}


@register_criterion("bn-scale")
def bn_scale(model, space: PruningSpace, batch: Batch) -> Scores:
    """|γ| of the batch-norm layers on each channel (network slimming); falls back to L1 without BN."""
    scores = {}
    for g in space.prunable:
        gammas = [s for s in g.slices if s.role == "norm" and s.param == "weight"]
        if gammas:
            only = Group(g.id, g.kind, g.size, gammas)
            scores[g.id] = reduce_slices(model, only, lambda v: v.abs().sum(), roles=("norm",))
        else:
            scores[g.id] = reduce_slices(model, g, lambda v: v.abs().sum(), roles=("out",))
    return scores


@register_criterion("random")
def random(model, space: PruningSpace, batch: Batch) -> Scores:
    """Uniform random scores from the run's seed (the sanity baseline every criterion must beat)."""
    gen = torch.Generator().manual_seed(batch.seed)
    return {g.id: torch.rand(g.size, generator=gen) for g in space.prunable}

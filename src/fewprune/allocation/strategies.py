"""The allocation families: uniform per group, global ranking, explicit per-group ratios."""

from __future__ import annotations

import math

import torch

from ..criteria import Scores
from ..structure import PruningSpace
from .base import lowest, max_removable, register_allocator


@register_allocator("uniform")
def uniform(space: PruningSpace, scores: Scores, level: float, max_ratio: float = 0.9) -> dict[str, list[int]]:
    """Every prunable group loses the same fraction r = λ·max_ratio of its lowest-scoring units.

    Fractions of a unit are settled by largest remainder across groups, so the
    total grows one unit at a time with λ (small groups, such as 4 attention
    heads, would otherwise all jump together and make some targets unreachable).
    """
    ratio = level * max_ratio
    groups = space.prunable
    caps = {g.id: max_removable(g.size, g.min_keep, max_ratio) for g in groups}
    exact = {g.id: g.size * ratio for g in groups}
    counts = {gid: min(math.floor(v + 1e-9), caps[gid]) for gid, v in exact.items()}
    extra = round(sum(exact.values())) - sum(counts.values())
    by_remainder = sorted(groups, key=lambda g: (-(exact[g.id] - math.floor(exact[g.id] + 1e-9)), g.id))
    for g in by_remainder:
        if extra <= 0:
            break
        if counts[g.id] < caps[g.id]:
            counts[g.id] += 1
            extra -= 1
    return {g.id: lowest(scores[g.id], counts[g.id]) for g in groups}


def normalise(scores: torch.Tensor) -> torch.Tensor:
    """Scores divided by their group mean, so groups of different scale compete fairly."""
    mean = scores.abs().mean()
    return scores / mean if mean > 0 else torch.zeros_like(scores)


@register_allocator("global")
def global_ranking(space: PruningSpace, scores: Scores, level: float, max_ratio: float = 0.9,
                   normalised: bool = True) -> dict[str, list[int]]:
    """One threshold over all groups' mean-normalised scores; λ is the fraction of all units below it."""
    entries = []
    for g in space.prunable:
        values = scores[g.id].float()
        norm = normalise(values) if normalised else values
        entries += [(float(norm[i]), g.id, i) for i in range(g.size)]
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    budget = math.floor(level * len(entries))
    caps = {g.id: max_removable(g.size, g.min_keep, max_ratio) for g in space.prunable}
    chosen: dict[str, list[int]] = {g.id: [] for g in space.prunable}
    taken = 0
    for _, gid, i in entries:
        if taken >= budget:
            break
        if len(chosen[gid]) < caps[gid]:
            chosen[gid].append(i)
            taken += 1
    return {gid: sorted(v) for gid, v in chosen.items()}


@register_allocator("threshold")
def threshold(space: PruningSpace, scores: Scores, level: float, max_ratio: float = 0.9) -> dict[str, list[int]]:
    """One threshold over the raw scores, for scores already comparable across groups (learned gate logits)."""
    return global_ranking(space, scores, level, max_ratio, normalised=False)


@register_allocator("ratios")
def explicit_ratios(space: PruningSpace, scores: Scores, level: float, max_ratio: float = 0.9,
                    ratios: dict[str, float] | None = None) -> dict[str, list[int]]:
    """Per-group ratios given by the caller (e.g. CMa's per-block search), scaled by λ.

    Groups not named in ``ratios`` keep their width.
    """
    out = {}
    for g in space.prunable:
        r = (ratios or {}).get(g.id, 0.0)
        count = min(math.floor(g.size * r * level + 1e-9), max_removable(g.size, g.min_keep, max_ratio))
        out[g.id] = lowest(scores[g.id], count)
    return out

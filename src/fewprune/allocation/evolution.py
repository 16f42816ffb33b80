"""Differential evolution (DE/rand/1/bin, feasibility first) and CMa's profile-matching allocator.

CMa's filter level does not rank channels globally: it asks every residual
block to lose a share of its inner channels that follows the block's
concept-mask profile (blocks that change little lose more), and searches the
per-block ratios that match that profile while meeting the MAC (or param)
target. Candidates are costed with the analytic cost model, so the 5 000
evaluations of the default search take about a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..criteria import Scores
from ..structure import PruningSpace
from .base import Target, lowest, max_removable, reduction, register_allocator, round_keep


@dataclass
class Evolution:
    """The outcome of a search: best vector, its objective and violation, and the best-so-far trace."""

    best: torch.Tensor
    objective: float
    violation: float
    trace: list[tuple[float, float]] = field(default_factory=list)  # (violation, objective) per generation


def _better(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Feasibility first: lower violation wins; at equal violation, lower objective."""
    return a[0] < b[0] or (a[0] == b[0] and a[1] < b[1])


def differential_evolution(objective: Callable[[torch.Tensor], float], violation: Callable[[torch.Tensor], float],
                           lower: torch.Tensor, upper: torch.Tensor, population: int = 50, generations: int = 100,
                           mutation: float = 0.5, crossover: float = 0.9, seed: int = 0) -> Evolution:
    """Minimise ``objective`` subject to ``violation == 0`` over the box [lower, upper] (DE/rand/1/bin).

    Each trial ``a + F·(b − c)`` (three distinct random members) is crossed
    with its parent gene by gene with probability ``crossover`` (one gene
    always from the mutant), clipped to the box, and replaces the parent if it
    is better under the feasibility-first rule; the best so far never worsens.
    """
    gen = torch.Generator().manual_seed(seed)
    lower, upper = lower.double(), upper.double()
    dims = len(lower)
    if population < 4:
        raise ValueError("differential evolution needs a population of at least 4")
    members = lower + torch.rand(population, dims, generator=gen, dtype=torch.float64) * (upper - lower)
    fitness = [(violation(m), objective(m)) for m in members]
    best_index = min(range(population), key=lambda i: (fitness[i][0], fitness[i][1]))
    best, best_fit = members[best_index].clone(), fitness[best_index]
    trace = [best_fit]
    for _ in range(generations):
        for i in range(population):
            others = [j for j in torch.randperm(population, generator=gen).tolist() if j != i][:3]
            a, b, c = members[others[0]], members[others[1]], members[others[2]]
            mutant = a + mutation * (b - c)
            take = torch.rand(dims, generator=gen) < crossover
            take[torch.randint(dims, (1,), generator=gen)] = True
            trial = torch.where(take, mutant, members[i]).clamp(lower, upper)
            trial_fit = (violation(trial), objective(trial))
            if _better(trial_fit, fitness[i]):
                members[i], fitness[i] = trial, trial_fit
                if _better(trial_fit, best_fit):
                    best, best_fit = trial.clone(), trial_fit
        trace.append(best_fit)
    return Evolution(best, best_fit[1], best_fit[0], trace)


def inverse_min_max(values: dict[str, float], least_changed: float = 0.7, most_changed: float = 0.4) -> dict[str, float]:
    """Map divergences linearly so the smallest gets ``least_changed`` and the largest ``most_changed``."""
    lo, hi = min(values.values()), max(values.values())
    if hi == lo:
        return {k: (least_changed + most_changed) / 2 for k in values}
    return {k: least_changed + (v - lo) / (hi - lo) * (most_changed - least_changed) for k, v in values.items()}


def block_groups(space: PruningSpace, blocks: list[str], protected: bool = False) -> dict[str, list]:
    """The prunable groups living entirely inside each block (a block's inner channels); ``protected=True``: the
    protected ones instead."""
    candidates = [g for g in space.groups if g.protected] if protected else space.prunable
    inside = {}
    for b in blocks:
        groups = [g for g in candidates if all(s.module.startswith(b + ".") for s in g.slices)]
        if groups:
            inside[b] = groups
    return inside


@register_allocator("de")
def profile_matching(space: PruningSpace, scores: Scores, target: Target, max_ratio: float = 0.9, seed: int = 0,
                     bounds: tuple[float, float] = (0.1, 0.9), least_changed: float = 0.7, most_changed: float = 0.4,
                     population: int = 50, generations: int = 100, tolerance: float = 4e-4,
                     round_to: int | None = None, outside: str = "as-needed") -> dict[str, list[int]]:
    """Per-block inner-channel ratios whose profile follows the blocks' scores and whose cost meets ``target``.

    Needs block scores (``Scores.blocks``, e.g. from the ``cma`` criterion):
    they map to a desired ratio profile (least-changing block ``least_changed``,
    most-changing ``most_changed``); DE minimises the L1 distance between the
    normalised ratio and desired profiles with the target met within
    ``tolerance`` (``round_to``: widths kept multiples of it). Inside each block the lowest-scoring units go.

    As in CMa, only groups inside the profiled blocks are pruned while that can
    meet the target. ``outside="as-needed"`` (fewprune's extension) lets the
    other prunable groups — a MobileNetV2's stride and width-changing blocks,
    stem and residual streams, which leave CMa at about 50% of MACs — share one
    more ratio when the blocks' inner channels alone cannot carry the target;
    DE keeps it as small as it can. ``outside="keep"`` never prunes them.
    """
    if outside not in ("as-needed", "keep"):
        raise ValueError(f"outside={outside!r}: 'as-needed' or 'keep'")
    profile_of = getattr(scores, "blocks", None)
    if not profile_of:
        raise ValueError("the de allocator needs per-block scores (Scores.blocks) from a profiling criterion "
                         "such as cma")
    profiled = [b for b in space.blocks if b in profile_of]
    inside = block_groups(space, profiled)
    if not inside:
        reasons = sorted({g.reason for groups in block_groups(space, profiled, protected=True).values()
                          for g in groups if g.reason})
        raise ValueError("no block has prunable inner channels for the de allocator to distribute"
                         + (f": {'; '.join(reasons[:3])}" if reasons else ""))
    names = sorted(inside)
    desired = inverse_min_max({b: profile_of[b] for b in names}, least_changed, most_changed)
    desired_profile = torch.tensor([desired[b] for b in names], dtype=torch.float64)
    desired_profile = desired_profile / desired_profile.sum()

    covered = {g.id for groups in inside.values() for g in groups}
    rest = [g for g in space.prunable if g.id not in covered]

    def removed_share(g, ratio: float) -> int:
        keep = round_keep(g.size, math.ceil(g.size * (1 - ratio) - 1e-9), round_to)
        return min(g.size - keep, max_removable(g.size, g.min_keep, max_ratio))

    def removal_counts(ratios: torch.Tensor) -> dict[str, int]:
        ratios = ratios.tolist()
        counts = {g.id: removed_share(g, r) for b, r in zip(names, ratios, strict=False) for g in inside[b]}
        if len(ratios) > len(names):  # the shared ratio of the groups outside the blocks
            counts.update({g.id: removed_share(g, ratios[-1]) for g in rest})
        return counts

    def achieved(ratios: torch.Tensor) -> float:
        return reduction(space, {gid: range(c) for gid, c in removal_counts(ratios).items()}, target.kind)

    lower, upper = torch.full((len(names),), bounds[0]), torch.full((len(names),), bounds[1])
    if outside == "as-needed" and rest and achieved(upper) < target.value - tolerance:
        lower, upper = torch.cat([lower, torch.zeros(1)]), torch.cat([upper, torch.tensor([max_ratio])])
    search = differential_evolution(
        # the profile decides; a shared outside ratio only breaks ties, towards pruning less outside the blocks
        objective=lambda r: float((r[:len(names)] / r[:len(names)].sum() - desired_profile).abs().sum()
                                  + 1e-3 * r[len(names):].sum()),
        violation=lambda r: max(0.0, abs(achieved(r) - target.value) - tolerance),
        lower=lower, upper=upper, population=population, generations=generations, seed=seed)
    return {gid: lowest(scores[gid], count) for gid, count in removal_counts(search.best).items()}


profile_matching.direct = True  # solves for the target itself (no λ family for bisection)
# --blocks auto tries every block count with the outside groups kept before pruning them: CMa drops whole
# blocks rather than narrow the residual streams the blocks share (api._drop_then_allocate).
profile_matching.auto_blocks_prefers = {"outside": "keep"}

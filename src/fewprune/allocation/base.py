"""Allocation: turn scores and a Target into the units each group loses.

Every allocator is a *family* of removals indexed by one level λ ∈ [0, 1]
(``removal(λ)``: more is removed as λ grows). ``allocate`` finds the λ whose
removal meets the target by bisection on the analytic cost model, so any new
allocator only has to say how λ maps to per-group removals.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch

from ..criteria import Scores
from ..registry import Registry
from ..structure import PruningSpace

allocators: Registry = Registry("allocator")
register_allocator = allocators.register


class TargetUnreachable(ValueError):
    """The requested reduction cannot be met; the message says why."""


class StoppedShort(TargetUnreachable):
    """A method stopped by its own rule at ``reached`` (a fraction of the target's kind) before the target.

    Raised only by allocators whose path does not depend on the target (the
    target only says where to stop), so any larger target of the same kind
    stops at the same point: a sweep need not run it to know.
    """

    def __init__(self, message: str, reached: float):
        super().__init__(message)
        self.reached = reached


@dataclass(frozen=True)
class Target:
    """What to reach. Fractions are of the teacher's total: ``Target(macs=0.5)`` removes half its MACs.

    ``channels`` removes that fraction of every prunable group's units;
    ``blocks`` drops that many removable blocks. ``blocks`` may also come with
    ``macs`` or ``params`` (depth and width together): ``Target(macs=0.7, blocks=6)``
    drops 6 blocks, then removes channels until 70% of the teacher's MACs are gone;
    ``blocks="auto"`` drops the fewest blocks with which the channel allocation can
    reach the target (useful with ``min_width``, where narrow layers cannot shrink).
    ``speedup=2.0`` asks for a student that runs twice as fast as the teacher,
    timed on this machine (batch 64, the threads torch uses): compress searches
    the least MAC fraction whose timings reach it (:mod:`fewprune.allocation.speedup`);
    timings scatter, so a later timing of the student lands near 2×, not surely above.
    """

    macs: float | None = None
    params: float | None = None
    channels: float | None = None
    blocks: int | str | None = None  # a count, or "auto" beside macs= / params= / speedup=
    speedup: float | None = None  # measured teacher time ÷ student time to reach, > 1
    tolerance: float = 0.01  # MAC/param targets are met within this many fraction points

    def __post_init__(self):
        given = [k for k in ("macs", "params", "channels", "speedup", "blocks") if getattr(self, k) is not None]
        amounts = [k for k in given if k != "blocks"]
        if not given or len(amounts) > 1 or (self.blocks is not None and amounts == ["channels"]):
            raise ValueError("a Target takes one of macs=, params=, channels=, speedup=, blocks=, or blocks= with "
                             f"macs=, params= or speedup= (got {given or 'none'})")
        for k in amounts:
            v = getattr(self, k)
            if k == "speedup":
                if not v > 1:
                    raise ValueError(f"Target speedup={v} must be above 1 (times faster than the teacher)")
            elif not 0 <= v < 1:
                raise ValueError(f"Target {k}={v} must be a fraction in [0, 1)")
        if self.blocks == "auto":
            if not amounts:
                raise ValueError('Target blocks="auto" needs macs=, params= or speedup= (it drops as few blocks as '
                                 "reach them)")
        elif self.blocks is not None and (not isinstance(self.blocks, int) or self.blocks < 0):
            raise ValueError(f"Target blocks= must be a non-negative count or 'auto', not {self.blocks!r}")

    @classmethod
    def from_dict(cls, d: dict) -> Target:
        return cls(**d)

    @property
    def kind(self) -> str:
        """What is measured against the value: ``macs``, ``params``, ``channels``, ``speedup`` (or ``blocks``
        alone)."""
        return next(k for k in ("macs", "params", "channels", "speedup", "blocks") if getattr(self, k) is not None)

    @property
    def value(self) -> float:
        return getattr(self, self.kind)

    @property
    def is_hybrid(self) -> bool:
        """Blocks dropped *and* a MAC or parameter fraction reached by removing channels."""
        return self.blocks is not None and self.kind != "blocks"

    def describe(self) -> str:
        if self.kind == "blocks":
            return f"{self.value:g} blocks"
        if self.kind == "speedup":
            return f"{self.value:g}× measured speed-up" + (f" ({self.blocks} blocks)" if self.is_hybrid else "")
        return f"-{100 * self.value:g}% {self.kind}" + (f" ({self.blocks} blocks)" if self.is_hybrid else "")

    def to_dict(self) -> dict:
        return {self.kind: self.value, **({"blocks": self.blocks} if self.is_hybrid else {})}


def lowest(scores: torch.Tensor, count: int) -> list[int]:
    """Indices of the ``count`` lowest scores (ties broken by index, so results are deterministic)."""
    if count <= 0:
        return []
    order = sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))
    return sorted(order[:count])


def max_removable(size: int, min_keep: int, max_ratio: float) -> int:
    return max(0, min(size - min_keep, math.floor(size * max_ratio)))


def round_keep(size: int, keep: int, multiple: int | None) -> int:
    """``keep`` snapped to a width CPU kernels run efficiently (at most ``size``).

    oneDNN's convolutions work on blocks of ``multiple`` channels (16 with
    AVX-512, 8 with AVX2) and pad the last block, so above one block a width of
    20 runs as slowly as 32: such widths are rounded to the nearest multiple.
    Below one block the kernels scale with the width (at least on their input
    side), so narrower widths are kept as they are, and so is an unpruned group.
    """
    if not multiple or multiple <= 1 or keep < multiple or keep >= size:
        return keep
    return min(size, max(multiple, math.floor(keep / multiple + 0.5) * multiple))  # halves round up


def channel_block() -> int:
    """The channel block of this CPU's convolution kernels: 16 with AVX-512, 8 with AVX2, else 4."""
    capability = torch.backends.cpu.get_cpu_capability().upper()
    return 16 if "AVX512" in capability else 8 if "AVX2" in capability else 4


def resolve_round_to(round_to: int | str | None) -> int | None:
    """``round_to`` as a channel count: ``"auto"`` is :func:`channel_block` of this machine."""
    if round_to in (None, 0, 1):
        return None
    if round_to == "auto":
        return channel_block()
    if isinstance(round_to, str) and round_to.isdigit():
        round_to = int(round_to)
    if not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to must be a positive channel count or 'auto', not {round_to!r}")
    return round_to


def round_widths(space: PruningSpace, scores: Scores, removed: dict[str, list[int]],
                 multiple: int | None) -> dict[str, list[int]]:
    """``removed`` adjusted so every channel group keeps a multiple of ``multiple`` units.

    A group that must lose more gives up its lowest-scoring kept units; one
    that must lose fewer takes back its highest-scoring removed units. Heads
    are left alone.
    """
    if not multiple or multiple <= 1:
        return removed
    out = dict(removed)
    for g in space.prunable:
        gone = list(removed.get(g.id, ()))
        if g.kind != "channels":
            continue
        keep = round_keep(g.size, g.size - len(gone), multiple)
        change = (g.size - keep) - len(gone)
        key = lambda i, v=scores[g.id]: (float(v[i]), i)  # noqa: E731
        if change > 0:
            kept = sorted((i for i in range(g.size) if i not in set(gone)), key=key)
            gone += kept[:change]
        elif change < 0:
            gone = sorted(gone, key=key)[:change]
        out[g.id] = sorted(gone)
    return out


def _refine_rounded(space: PruningSpace, scores: Scores, removed: dict[str, list[int]], target: Target,
                    multiple: int, max_ratio: float) -> dict[str, list[int]]:
    """Move towards ``target`` one multiple of channels at a time (a greedy local search).

    With rounded widths many groups can cross a rounding threshold at the same
    level, so the family jumps over the target. Each step either removes a
    group's next ``multiple`` lowest-scoring channels or gives back its
    ``multiple`` highest-scoring removed ones, whichever lands closest to the
    target (ties: least mean-normalised score moved); it stops when no move
    gets closer.
    """
    removed = {gid: list(r) for gid, r in removed.items()}
    while True:
        now = reduction(space, removed, target.kind)
        distance = abs(now - target.value)
        best, best_key = None, (distance, math.inf)
        for g in space.prunable:
            if g.kind != "channels" or g.size < multiple:
                continue
            gone = set(removed.get(g.id, ()))
            values = scores[g.id].float()
            mean = float(values.abs().mean()) or 1.0
            order = lambda i, v=values: (float(v[i]), i)  # noqa: E731
            moves = []
            if g.size - len(gone) - multiple >= max(multiple, g.min_keep) \
                    and len(gone) + multiple <= math.floor(g.size * max_ratio):
                taken = sorted((i for i in range(g.size) if i not in gone), key=order)[:multiple]
                moves.append((sorted(gone | set(taken)), sum(float(values[i]) for i in taken) / mean))
            if len(gone) >= multiple:
                back = sorted(gone, key=order)[-multiple:]
                moves.append((sorted(gone - set(back)), 0.0))
            for trial_removed, cost in moves:
                trial = {**removed, g.id: trial_removed}
                key = (abs(reduction(space, trial, target.kind) - target.value), cost)
                if key[0] < distance and key < best_key:  # strictly closer each step: it terminates
                    best, best_key = trial, key
        if best is None:
            return removed
        removed = best


def reduction(space: PruningSpace, removed: dict[str, list[int]], kind: str, dropped=()) -> float:
    keep = space.keep_counts(removed)
    if kind == "macs":
        return 1 - space.cost.macs(keep, dropped) / space.cost.base_macs
    if kind == "params":
        return 1 - space.cost.params(keep, dropped) / space.cost.base_params
    total = sum(g.size for g in space.prunable)
    return sum(len(removed.get(g.id, ())) for g in space.prunable) / max(total, 1)


def allocate(space: PruningSpace, scores: Scores, target: Target, allocator: str = "uniform",
             max_ratio: float = 0.9, seed: int = 0, round_to: int | None = None, **options) -> dict[str, list[int]]:
    """Removed unit indices per group meeting ``target`` (MACs, params or channels).

    Most allocators are a family over one level λ that is bisected here; a
    ``direct`` allocator (such as ``de``) solves for the target itself with
    ``seed`` and is only checked. ``round_to`` keeps every channel width a
    multiple of that many channels (see :func:`round_keep`).
    """
    if target.kind == "blocks":
        raise ValueError("a blocks= target is met by dropping blocks, not by channel allocation")
    family = allocators.get(allocator)
    if target.value == 0:
        return {}
    if getattr(family, "direct", False):
        if round_to:
            if "round_to" not in inspect.signature(family).parameters:
                raise ValueError(f"the {allocator} allocator cannot round widths (round_to); use uniform, global, "
                                 "threshold, ratios or de")
            options["round_to"] = round_to
        best = family(space, scores, target, max_ratio=max_ratio, seed=seed, **options)
        return _checked(space, best, target, lambda achieved: (
            f"the {allocator} allocator reached {100 * achieved:.2f}% {target.kind} removed, not the "
            f"{100 * target.value:.1f}% requested (±{100 * target.tolerance:.1f}), removing at most "
            f"{100 * max_ratio:.0f}% of each group it may prune"))
    removal = lambda level: round_widths(space, scores, family(space, scores, level, max_ratio=max_ratio, **options),
                                         round_to)
    if target.kind == "channels" and allocator == "uniform":
        return removal(target.value / max_ratio if max_ratio else 0.0)
    most = reduction(space, removal(1.0), target.kind)
    if most + 1e-9 < target.value - target.tolerance:
        floor = max((g.min_keep for g in space.prunable if g.kind == "channels"), default=1)
        keeps = "one unit" if floor <= 1 else f"min(width, {floor}) channels (min_width)"
        raise TargetUnreachable(
            f"cannot remove {100 * target.value:.1f}% of {target.kind}: removing up to {100 * max_ratio:.0f}% of every "
            f"prunable group (keeping at least {keeps}) reaches only {100 * most:.1f}%. "
            f"{_protected_note(space, sentence=True)}. Lower the target, drop whole blocks as well "
            f"(blocks=, CLI --blocks), or let each group lose more (options={{'allocation.max_ratio': 0.95}}, "
            f"CLI --option allocation.max_ratio=0.95)."
        )
    lo, hi = 0.0, 1.0
    best = removal(hi)
    for _ in range(50):
        mid = (lo + hi) / 2
        candidate = removal(mid)
        if reduction(space, candidate, target.kind) >= target.value:
            hi, best = mid, candidate
        else:
            lo = mid
        if hi - lo < 1e-6:
            break
    # The smallest level that reaches the target may overshoot by one coarse unit (a whole head);
    # the level just below it may land closer.
    below = removal(lo)
    if round_to and abs(reduction(space, best, target.kind) - target.value) > target.tolerance:
        below = _refine_rounded(space, scores, below, target, round_to, max_ratio)
    reached_below, reached_best = reduction(space, below, target.kind), reduction(space, best, target.kind)
    steps = sorted((reached_below, reached_best))
    if abs(reached_below - target.value) < abs(reached_best - target.value):
        best = below
    return _checked(space, best, target, lambda achieved: (
        f"{target.kind} reduction can only step from {100 * steps[0]:.2f}% to "
        f"{100 * steps[1]:.2f}% with {allocator} allocation (groups are too coarse: {len(space.prunable)} may be "
        f"pruned; {_protected_note(space)}); the {100 * target.value:.1f}% target is not met within "
        f"{100 * target.tolerance:.1f} points: ask for a nearby target"))


def _protected_note(space: PruningSpace, sentence: bool = False) -> str:
    """Which groups keep their width and why (the first four), for a target that cannot be met; ``sentence``:
    capitalised, to start one."""
    protected = [g for g in space.groups if g.protected]
    why = "; ".join(f"{g.id}: {g.reason}" for g in protected[:4])
    note = (f"protected groups keep their width ({why}{'…' if len(protected) > 4 else ''})" if protected
            else "no group is protected")
    return note[0].upper() + note[1:] if sentence else note


def _checked(space: PruningSpace, removed: dict[str, list[int]], target: Target, why) -> dict[str, list[int]]:
    """``removed`` if it meets ``target`` within its tolerance, else TargetUnreachable(why(achieved))."""
    achieved = reduction(space, removed, target.kind)
    if abs(achieved - target.value) > target.tolerance:
        raise TargetUnreachable(why(achieved))
    return removed

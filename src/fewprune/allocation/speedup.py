"""A measured speed-up as the target: the MAC fraction to remove, found by timing candidate structures.

CPU time follows MACs only roughly (padded channel blocks, fixed per-layer
costs, memory-bound depthwise layers), so "twice as fast" is not "half the
MACs". :func:`search_macs_for_speedup` asks a caller-supplied ``speedup_at(f)``
(build the structure that removes the fraction ``f`` of MACs, time it against
the teacher) at a few fractions and returns the smallest one measured to reach
the goal. It starts where time would be proportional to MACs, extrapolates
past a shortfall as if part of the time were fixed and the rest followed the
MACs, then narrows the bracket between the largest fraction measured short
and the smallest measured to reach the goal, which is timed again before it
is chosen.

Time is not even monotone in the fraction: widths crossing a kernel's channel
block change the speed by tens of percent (resnet56, plain L1 + MiR widths:
65.3% of MACs removed ran 1.29×, 65.9% 1.70×, 67.0% 1.98×), so the search
finds *a* small fraction that reaches the goal, not the least one there is;
`--round-to auto` and `--min-width auto` make the curve smoother.
The answer depends on timings, so it is not bit-reproducible across runs or
machines: the probes are returned for the report, and compressing again with
``Target(macs=f)`` at the fraction found rebuilds the same student.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from .base import TargetUnreachable

# A fraction is never proposed beyond this: the allocators keep at least one unit per group anyway.
HIGHEST_FRACTION = 0.98
# Rounds of one timing further apart than this (largest ÷ smallest ratio, median over the probes): the machine was
# too busy for the search to mean much (quiet: 1.02-1.15 on resnet56; beside two sweep processes, resnet20: 2.77)
BUSY_SCATTER = 1.3
# Timings of the fraction chosen (their mean must reach the goal): a shared machine's timings of one structure
# vary by 10-25% between runs, so the least fraction measured once to reach it is often a lucky timing.
CONFIRMATIONS = 2


@dataclass
class SpeedupSearch:
    """The probes of one search, in order: ``{"macs": f, "speedup": mean, "measured": [each timing's]}`` (and
    ``"scatter"``: how far apart its rounds fell, where the timing reports them), or ``{"macs": f, "unreachable":
    why}``."""

    goal: float
    probes: list[dict] = field(default_factory=list)

    def reached(self) -> list[dict]:
        return [p for p in self.probes if p.get("speedup", 0.0) >= self.goal]

    def short(self) -> list[dict]:
        return [p for p in self.probes if "speedup" in p and p["speedup"] < self.goal]

    def best(self) -> dict | None:
        """The smallest fraction measured to reach the goal (None before one does)."""
        reached = self.reached()
        return min(reached, key=lambda p: p["macs"]) if reached else None

    def timed_at(self, fraction: float) -> dict | None:
        """The probe that timed ``fraction`` (None if none did)."""
        return next((p for p in self.probes if p["macs"] == fraction and "measured" in p), None)

    def scatter(self) -> float | None:
        """The median over the probes of how far apart one timing's rounds fell (largest ÷ smallest ratio), where
        the timings report their rounds: about 1.1 on a quiet machine, far more on a busy one."""
        spreads = [p["scatter"] for p in self.probes if "scatter" in p]
        return statistics.median(spreads) if spreads else None

    def to_dict(self) -> dict:
        best, scatter = self.best(), self.scatter()
        return {"goal": self.goal, "probes": self.probes, **({"macs": best["macs"]} if best else {}),
                **({"scatter": scatter} if scatter is not None else {})}


TEACHER = {"macs": 0.0, "speedup": 1.0}  # removing nothing runs as fast as the teacher


def _time_share_line(a: dict, b: dict, goal: float) -> float:
    """The fraction where the line through two probes' time shares (1 / speed-up) reaches 1 / ``goal``: exact
    when part of the time is fixed and the rest scales with the MACs kept (nan when the line does not fall)."""
    slope = (1 / b["speedup"] - 1 / a["speedup"]) / (b["macs"] - a["macs"]) if b["macs"] != a["macs"] else 0.0
    return a["macs"] + (1 / goal - 1 / a["speedup"]) / slope if slope < 0 else math.nan


def _lower_end(search: SpeedupSearch, below: float) -> dict:
    """The furthest probe measured short of the goal below the fraction ``below`` (the teacher if none): a
    shortfall above a fraction that reached the goal is timing noise, not a bound."""
    return max((p for p in search.short() if p["macs"] < below), key=lambda p: p["macs"], default=TEACHER)


def _next_fraction(search: SpeedupSearch, limit: float, tolerance: float) -> float:
    """Where to probe next. Until a fraction reaches the goal: where the line through the two furthest
    measured points reaches it (aiming 1% past it, so that noise or a bent curve rarely leaves it just short),
    or half-way to what can be removed when that line says nothing. Then: inside the bracket between the
    furthest shortfall and the least fraction that reached it, on the line through both ends, kept a tenth
    of the bracket from either end and at least ``tolerance`` below the upper one (so each probe either ends
    the search or shrinks the bracket)."""
    best = search.best()
    if best is None:
        measured = sorted([TEACHER, *search.short()], key=lambda p: p["macs"])
        guess = _time_share_line(measured[-2], measured[-1], 1.01 * search.goal) if len(measured) > 1 else math.nan
        low = measured[-1]["macs"]
        return guess if low < guess < limit else (low + limit) / 2
    low = _lower_end(search, best["macs"])
    span = best["macs"] - low["macs"]
    guess = _time_share_line(low, best, search.goal)
    if math.isnan(guess):
        guess = low["macs"] + span / 2
    guess = min(max(guess, low["macs"] + 0.1 * span), best["macs"] - 0.1 * span)
    return min(guess, best["macs"] - tolerance)


def search_macs_for_speedup(speedup_at: Callable[[float], float | dict], goal: float, tolerance: float = 0.01,
                            max_probes: int = 10, log: Callable[[str], None] | None = None) -> SpeedupSearch:
    """Probe ``speedup_at(fraction)`` until the smallest fraction measured to reach ``goal``× is known within
    ``tolerance`` (or ``max_probes`` are spent); returns the search, whose :meth:`~SpeedupSearch.best` probe
    holds that fraction. The fraction chosen is timed :data:`CONFIRMATIONS` times, and the mean must reach the
    goal; when the probes run out first, the least fraction that reached it and does so again is chosen.

    ``speedup_at`` returns the speed-up, or :func:`~fewprune.metrics.paired_speedup`'s dict (its ``rounds``
    show how busy the machine was), and raises :class:`TargetUnreachable` where the fraction cannot be
    removed; fractions from there on are not tried again. Raises
    :class:`TargetUnreachable` naming the fastest structure measured when none
    reaches the goal.
    """
    if not goal > 1:
        raise ValueError(f"a speed-up goal must be above 1, not {goal}")
    search = SpeedupSearch(goal)
    limit = HIGHEST_FRACTION

    def measure(fraction: float) -> None:
        nonlocal limit

        def say(outcome: str) -> None:
            if log:
                log(f"speed-up search: {100 * fraction:.1f}% of MACs removed → {outcome}")

        try:
            timing = speedup_at(fraction)
        except TargetUnreachable as err:
            search.probes.append({"macs": fraction, "unreachable": str(err)})
            limit = min(limit, fraction)
            say("cannot be removed")
            return
        measured = float(timing["speedup"] if isinstance(timing, dict) else timing)
        probe = search.timed_at(fraction)
        if probe is None:
            probe = {"macs": fraction, "measured": []}  # unrounded: the fraction is re-used
            search.probes.append(probe)
        probe["measured"].append(measured)
        probe["speedup"] = statistics.fmean(probe["measured"])
        rounds = timing.get("rounds") if isinstance(timing, dict) else None
        if rounds and min(rounds) > 0:
            probe["scatter"] = max(probe.get("scatter", 1.0), max(rounds) / min(rounds))
        say(f"{measured:.2f}×")

    fraction = min(1 - 1 / goal, limit)  # where time proportional to MACs would reach it
    for _ in range(max_probes):
        measure(fraction)
        best = search.best()
        if best is not None and best["macs"] - _lower_end(search, best["macs"])["macs"] <= tolerance + 1e-9:
            if len(best["measured"]) >= CONFIRMATIONS:
                return search
            fraction = best["macs"]  # timed again before it is chosen: one lucky timing must not decide
            continue
        fraction = _next_fraction(search, limit, tolerance)
        if best is None and limit - fraction <= tolerance / 2:
            break  # pressed against what the method can remove
    # out of probes: of the fractions that reached the goal, the least one that does so again; when none does
    # (the goal sits where timings scatter around it), one a little beyond all of them
    beyond = min(limit, max((p["macs"] for p in search.probes if "speedup" in p), default=0.0) + 2 * tolerance)
    for fraction in [*sorted(p["macs"] for p in search.reached()), beyond]:
        # a fraction found unreachable lowers the limit to itself, which ends its timings
        while fraction < limit and len((search.timed_at(fraction) or {"measured": []})["measured"]) < CONFIRMATIONS:
            measure(fraction)
        if fraction < limit and search.timed_at(fraction)["speedup"] >= goal:
            return search
    fastest = max((p for p in search.probes if "speedup" in p), key=lambda p: p["speedup"], default=None)
    measured = (f"the fastest structure measured, {100 * fastest['macs']:.1f}% of MACs removed, ran "
                f"{fastest['speedup']:.2f}× faster" if fastest else "no structure could be built")
    raise TargetUnreachable(f"no structure tried reaches a {goal:g}× measured speed-up on this machine: {measured}"
                            f" ({len(search.probes)} tried). Ask for less, or let more go (--blocks auto, "
                            "--round-to auto, --min-width auto make CPU time follow the MACs removed)")


def describe_search(search: dict) -> str:
    """One line on a finished search (``SpeedupSearch.to_dict()``): each fraction tried, what it measured, and
    the one chosen."""
    def outcome(probe: dict) -> str:
        if "speedup" not in probe:
            return "unreachable"
        each = probe.get("measured", [])
        return f"{probe['speedup']:.2f}×" + (f" ({', '.join(f'{s:.2f}' for s in each)})" if len(each) > 1 else "")

    tried = ", ".join(f"{100 * p['macs']:.2f}% → {outcome(p)}" for p in search["probes"])
    busy = search.get("scatter", 1.0) > BUSY_SCATTER
    return (f"speed-up search for {search['goal']:g}×: {len(search['probes'])} structures timed against the "
            f"teacher (MACs removed → measured speed-up: {tried}); chose {100 * search['macs']:.2f}% of MACs "
            "removed, the least whose timings reach it"
            + (f". Warning: one timing's rounds differed by {search['scatter']:.2f}× (median), so this machine was "
               "busy and the speed-up reached may be far from the goal: search on a quiet machine, or give --macs"
               if busy else ""))

"""Iterative allocation: remove in steps, re-scoring the (masked) model after each step.

Yeom et al. re-rank filters on the current pruned network every 5% step;
Yasui et al. add an accuracy guard — the harmonic mean of per-class
accuracies on the few samples — that shrinks the step when a step would hurt
it and defers units whose removal hurts it most. Both need to look at the
model while deciding, which they do through a :class:`Probe` that
``fewprune.compress`` builds (the allocator itself never touches a model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..criteria import Scores
from ..structure import PruningSpace
from .base import StoppedShort, Target, TargetUnreachable, max_removable, reduction, register_allocator
from .paths import PathLog


@dataclass
class Probe:
    """Callbacks into the model for allocators that decide step by step.

    ``rescore(removed, **options)``: the criterion's scores on the model with ``removed`` silenced
    (options go to the criterion, e.g. a partial re-estimation);
    ``class_accuracy(removed)``: per-class accuracy on the few samples (labels, or the
    teacher's predictions) of that masked model. ``log`` collects what the allocator wants reported.
    ``anchor(removed)``: make whatever the probe caches a function of this removal alone (allocators
    call it at every waypoint, so a walk resumed there continues exactly as a fresh one does).
    ``path``: where the walk records its waypoints when paths are shared (see :mod:`.paths`).
    """

    rescore: Callable[..., Scores]
    class_accuracy: Callable[[dict[str, list[int]]], list[float]]
    log: list[dict] = field(default_factory=list)
    anchor: Callable[[dict[str, list[int]]], None] | None = None
    path: PathLog | None = None


def _waypoint(probe: Probe, removed: dict[str, list[int]], **state) -> None:
    """After an accepted step: anchor the probe there and, when paths are shared, record the loop state."""
    if probe.anchor is not None:
        probe.anchor(removed)
    if probe.path is not None:
        probe.path.waypoint({"removed": removed, "log": probe.log, **state})


def _resumed(probe: Probe | None) -> dict | None:
    """The loop state of the last shared waypoint this walk's target also reaches (None: start afresh)."""
    state = probe.path.resume() if probe is not None and probe.path is not None else None
    if state is not None:
        probe.log[:] = state.pop("log")
        if probe.anchor is not None:
            probe.anchor(state["removed"])
    return state


# A drop of exactly the tolerance is allowed: one sample of ten flipping in one of ten classes lowers the mean
# by 0.01, which float arithmetic sometimes computes as 0.010000000000000009 (8 of 55 such cases).
_SLACK = 1e-9


def harmonic_mean(accuracies: list[float]) -> float:
    """C / Σ 1/acc_c: high only when every class is served (0 if any class is lost)."""
    if not accuracies:
        return 0.0
    if min(accuracies) <= 0:
        return 0.0
    return len(accuracies) / sum(1 / a for a in accuracies)


def _ranked(space: PruningSpace, scores: Scores, removed: dict[str, list[int]], max_ratio: float,
            skip: set = frozenset()) -> list[tuple[str, int]]:
    """Remaining removable units (not removed, not locked), lowest score first (ties by group, then index)."""
    entries = []
    locked = getattr(scores, "locked", None) or {}
    for g in space.prunable:
        gone = set(removed.get(g.id, ())) | set(locked.get(g.id, ()))
        room = max_removable(g.size, g.min_keep, max_ratio) - len(gone)
        if room <= 0:
            continue
        values = scores[g.id].float()
        entries += [(float(values[i]), g.id, i) for i in range(g.size) if i not in gone and (g.id, i) not in skip]
    entries.sort()
    return [(gid, i) for _, gid, i in entries]


def _take(space: PruningSpace, removed: dict[str, list[int]], ranked: list[tuple[str, int]], count: int,
          target: Target, max_ratio: float, path: PathLog | None = None) -> dict[str, list[int]]:
    """``removed`` plus up to ``count`` units from ``ranked`` (per-group caps kept).

    Stops at the target; if the unit that reached it overshoots, the removal without
    it is returned when that lands closer. ``path`` hears how far the step went and
    whether the target cut it.
    """
    out = {gid: list(units) for gid, units in removed.items()}
    caps = {g.id: max_removable(g.size, g.min_keep, max_ratio) for g in space.prunable}
    taken, achieved, last = 0, reduction(space, out, target.kind), None
    for gid, i in ranked:
        if taken >= count or achieved >= target.value:
            break
        if len(out.setdefault(gid, [])) < caps[gid]:
            before = achieved
            out[gid].append(i)
            taken, achieved, last = taken + 1, reduction(space, out, target.kind), (gid, i, before)
    if path is not None:
        path.step(achieved, cut=achieved >= target.value)
    if last is not None and achieved >= target.value and abs(last[2] - target.value) < abs(achieved - target.value):
        out[last[0]].remove(last[1])
    return {gid: sorted(units) for gid, units in out.items() if units}


@register_allocator("iterative")
def iterative(space: PruningSpace, scores: Scores, target: Target, max_ratio: float = 0.9, seed: int = 0,
              probe: Probe | None = None, step: float = 0.05) -> dict[str, list[int]]:
    """Global ranking in steps of ``step`` × all prunable units, re-scored on the masked model after each step.

    Scores are compared raw across groups (LRP relevance is conserved, so it is
    comparable between layers). Without a probe the first scores are reused (one shot).
    """
    per_step = max(1, math.ceil(step * sum(g.size for g in space.prunable)))
    state = _resumed(probe) or {"removed": {}, "current": scores}
    removed, current = state["removed"], state["current"]
    path = probe.path if probe is not None else None
    while True:
        ranked = _ranked(space, current, removed, max_ratio)
        grown = _take(space, removed, ranked, per_step, target, max_ratio, path)
        if not ranked or grown == removed or _units(grown) < _units(removed) + per_step:
            return grown  # the target (or the last removable unit) was reached within this step
        removed = grown
        if probe is not None:
            probe.log.append({"removed": reduction(space, removed, target.kind)})
            current = probe.rescore(removed)
            _waypoint(probe, removed, current=current)


iterative.direct = iterative.needs_probe = iterative.reads_labels = True


def class_averaged_auc(log: list[dict]) -> float | None:
    """Area under each class's accuracy-vs-removed-fraction curve (trapezoids), averaged over classes."""
    points = [(entry["removed"], entry["per_class"]) for entry in log if "per_class" in entry]
    if len(points) < 2:
        return None
    areas = []
    for c in range(len(points[0][1])):
        areas.append(sum((x1 - x0) * (a0[c] + a1[c]) / 2 for (x0, a0), (x1, a1) in zip(points, points[1:], strict=False)))
    return sum(areas) / len(areas)


def _units(removed: dict[str, list[int]]) -> int:
    return sum(len(v) for v in removed.values())


@register_allocator("accuracy-aware")
def accuracy_aware(space: PruningSpace, scores: Scores, target: Target, max_ratio: float = 0.9, seed: int = 0,
                   probe: Probe | None = None, step: float = 0.05, min_step: float = 0.005,
                   tolerance: float = 0.01) -> dict[str, list[int]]:
    """Yasui et al.'s guarded schedule (the published description, completed where it is silent).

    Each step removes the ``step`` × N lowest-scoring units and is accepted only if the harmonic mean
    of per-class accuracies on the samples drops by at most ``tolerance`` from the current model;
    otherwise the step halves. Below ``min_step`` the single unit whose removal hurts the guard most
    among the next candidates is deferred to the end of the order. Once only deferred units are left
    the guard has given way: they are removed ``min_step`` at a time in the order they were deferred,
    and those steps are logged with ``guard_broken`` — the target is met and the log says where the
    guard failed. (Giving up after one window of deferrals in a row was faster but cost resnet56
    eleven points at 30% of channels: patient deferral is what makes the method.) An accepted step
    lets the step grow back (×2, up to ``step``).
    The criterion re-ranks the pruned model once every ``step`` × N units removed, as in Yeom et al.,
    however small the guarded steps that removed them (re-scoring after each 0.5% step made a 50%
    cell cost a hundred LRP passes for no gain in the order). Every accepted step is logged (rate,
    guard, per-class accuracy), so the curve and its area come with the result.
    """
    if probe is None:
        raise ValueError("the accuracy-aware allocator needs a probe (call it through fewprune.compress)")
    total = sum(g.size for g in space.prunable)
    state = _resumed(probe)
    if state is None:
        accuracies = probe.class_accuracy({})
        probe.log.append({"removed": 0.0, "guard": harmonic_mean(accuracies), "per_class": accuracies})
        # since_rescore: units removed since the criterion last ranked the model
        state = {"removed": {}, "accuracies": accuracies, "rate": step, "deferred": [], "current": scores,
                 "since_rescore": 0}
        _waypoint(probe, **state)
    removed, accuracies, rate, deferred, current, since_rescore = (
        state[k] for k in ("removed", "accuracies", "rate", "deferred", "current", "since_rescore"))
    guard = harmonic_mean(accuracies)

    def waypoint() -> None:
        _waypoint(probe, removed, accuracies=accuracies, rate=rate, deferred=deferred, current=current,
                  since_rescore=since_rescore)
    # What a removal does to the guard depends on the removal alone: consecutive deferrals share their
    # window but one unit, and halved steps may land on a set already measured, so each set is measured once.
    measured: dict[tuple, list[float]] = {}

    def class_accuracy(removal: dict[str, list[int]]) -> list[float]:
        key = tuple(sorted((gid, tuple(sorted(units))) for gid, units in removal.items() if units))
        if key not in measured:
            measured[key] = probe.class_accuracy(removal)
        return measured[key]

    window_size = max(1, math.ceil(min_step * total))
    while reduction(space, removed, target.kind) < target.value:
        ranked = _ranked(space, current, removed, max_ratio, skip=set(deferred))
        if not ranked:  # only deferred units are left: the guard has given way, finish the order
            movable = set(_ranked(space, current, removed, max_ratio))
            queue = [unit for unit in deferred if unit in movable]
            if not queue:
                raise TargetUnreachable(
                    f"every unit is removed up to its layer's cap: stopped at "
                    f"{100 * reduction(space, removed, target.kind):.1f}% {target.kind} removed")
            trial = _take(space, removed, queue, window_size, target, max_ratio, probe.path)
            if trial == removed:
                return removed
            removed, accuracies = trial, class_accuracy(trial)
            guard = harmonic_mean(accuracies)
            measured.clear()  # what comes next extends the new removal
            probe.log.append({"removed": reduction(space, removed, target.kind), "guard": guard,
                              "per_class": accuracies, "guard_broken": True})
            waypoint()
            continue
        count = max(1, math.ceil(rate * total))
        trial = _take(space, removed, ranked, count, target, max_ratio, probe.path)
        if trial == removed:
            return removed  # the next unit would overshoot the target by more than stopping short does
        trial_accuracies = class_accuracy(trial)
        trial_guard = harmonic_mean(trial_accuracies)
        if trial_guard >= guard - tolerance - _SLACK:
            taken = sum(map(len, trial.values())) - sum(map(len, removed.values()))
            removed, guard, accuracies = trial, trial_guard, trial_accuracies
            probe.log.append({"removed": reduction(space, removed, target.kind), "guard": guard,
                              "per_class": accuracies, "step": count})
            rate = min(step, 2 * rate)
            measured.clear()
            since_rescore += taken
            if since_rescore >= step * total:
                current, since_rescore = probe.rescore(removed), 0
            waypoint()
            continue
        rate /= 2
        if rate < min_step:
            # "change of order": of the next few candidates, defer the one whose removal alone hurts most
            harm = []
            for gid, i in ranked[:window_size]:
                single = {k: list(v) for k, v in removed.items()}
                single.setdefault(gid, []).append(i)
                harm.append((harmonic_mean(class_accuracy(single)), gid, i))
            worst = min(harm)
            deferred.append((worst[1], worst[2]))
            rate = min_step
    return removed


accuracy_aware.direct = accuracy_aware.needs_probe = accuracy_aware.reads_labels = True


@register_allocator("progressive")
def progressive(space: PruningSpace, scores: Scores, target: Target, max_ratio: float = 0.9, seed: int = 0,
                probe: Probe | None = None, chunk: float = 0.05, min_chunk: float = 0.0,
                tolerance: float = 0.01) -> dict[str, list[int]]:
    """C-SWAP's progressive one-shot loop (methods.md §4.2, proposed there; completed here).

    Remove the lowest-scoring unlocked units in chunks of ``chunk`` × the units still removable,
    re-score the masked model after each chunk, and stop before the (class-balanced) accuracy on the
    samples falls more than ``tolerance`` below the teacher's: a chunk that would is reverted and
    the search narrowed to chunks half as large, down to ``min_chunk`` or one unit (near the
    tolerance, single units of small effect still pass where a chunk of them fails); a chunk that
    holds lets the next grow back towards ``chunk``. Re-estimation costs a forward pass per unit,
    so after each chunk only the next three chunks' worth of candidates are re-estimated. Ending
    short of the target is an error naming the reason.
    """
    if probe is None:
        raise ValueError("the progressive allocator needs a probe (call it through fewprune.compress)")
    state = _resumed(probe)
    if state is None:
        start = sum(probe.class_accuracy({})) / max(len(probe.class_accuracy({})), 1)
        probe.log.append({"removed": 0.0, "accuracy": start})
        state = {"removed": {}, "current": scores, "size": chunk, "start": start}
        _waypoint(probe, **state)
    removed, current, size, start = (state[k] for k in ("removed", "current", "size", "start"))
    while reduction(space, removed, target.kind) < target.value:
        ranked = _ranked(space, current, removed, max_ratio)
        if not ranked:
            reached = reduction(space, removed, target.kind)
            raise StoppedShort(f"only locked (critical) or capped units remain: stopped at "
                               f"{100 * reached:.1f}% {target.kind} removed", reached)
        trial = _take(space, removed, ranked, max(1, math.ceil(size * len(ranked))), target, max_ratio, probe.path)
        if trial == removed:
            return removed  # the next unit would overshoot the target by more than stopping short does
        accuracies = probe.class_accuracy(trial)
        accuracy = sum(accuracies) / max(len(accuracies), 1)
        if accuracy < start - tolerance - _SLACK:
            if size <= min_chunk or size * len(ranked) <= 1:
                reached = reduction(space, removed, target.kind)
                raise StoppedShort(f"accuracy on the samples would fall more than {tolerance:g} below the "
                                   f"teacher's: stopped at {100 * reached:.1f}% {target.kind} removed", reached)
            size = max(size / 2, min_chunk)
            continue
        removed = trial
        probe.log.append({"removed": reduction(space, removed, target.kind), "accuracy": accuracy})
        size = min(chunk, 2 * size)
        if getattr(current, "partial", False):
            # re-estimate only the next candidates (a few chunks' worth); the rest keep their scores
            window = _ranked(space, current, removed, max_ratio)[: 3 * max(1, math.ceil(size * len(ranked)))]
            only: dict[str, list[int]] = {}
            for gid, i in window:
                only.setdefault(gid, []).append(i)
            current = probe.rescore(removed, previous=current, only=only)
        else:
            current = probe.rescore(removed)
        _waypoint(probe, removed, current=current, size=size, start=start)
    return removed


progressive.direct = progressive.needs_probe = progressive.reads_labels = True

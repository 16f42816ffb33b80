"""Shared paths: step-wise allocations that differ only in their target walk the same path.

The step-wise allocators (``iterative``, ``accuracy-aware``, ``progressive``)
take the same steps whatever the target, until a step is cut short because it
would pass the target. So a call for 50% of channels walks the first part of
the path a call for 30% walked, step for step. Inside :func:`shared_paths`,
each such allocation records *waypoints* (its loop state after every accepted
step) and a later call on the same model, samples, method, seed and target
kind resumes from the last waypoint its own target would also have reached,
instead of walking there again. Sweeps over targets and ``fewprune curve``
use it; a plain ``compress`` call shares nothing.

A waypoint is shared only while no step before it was cut by a target and
every step before it stayed below the new target, so the resumed call takes
exactly the steps a fresh call would. Allocators anchor their probe at every
waypoint (its cached outputs are recomputed from the removal alone), so a
resumed call also starts from the same cached state as a fresh one.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

_active: ContextVar[SharedPaths | None] = ContextVar("fewprune_shared_paths", default=None)


@dataclass
class Waypoint:
    state: dict  # the allocator's loop state (copied in and out)
    peak: float  # the furthest any step before it reached: a target above it takes the same steps
    seconds: float  # allocation time from the start of the path to here


@dataclass
class Path:
    """The waypoints of one path, in order; each walk adds those it reaches first, until a target cuts it."""

    waypoints: list[Waypoint] = field(default_factory=list)


class PathLog:
    """An allocation's handle on its path: ``resume()`` once, then ``step`` and ``waypoint`` as it walks."""

    def __init__(self, path: Path, target: float):
        self.path, self.target = path, target
        self.index = -1  # the waypoint this walk is at (-1: before the first)
        self.peak = 0.0
        self.cut = False  # a step of this walk was cut by its target: its later waypoints are its own
        self.offset, self.started = 0.0, time.perf_counter()
        self.resumed: Waypoint | None = None

    def resume(self) -> dict | None:
        """A copy of the last waypoint whose earlier steps all stayed below this target (None: start afresh)."""
        usable = [i for i, w in enumerate(self.path.waypoints) if w.peak < self.target]
        if not usable:
            return None
        self.index = usable[-1]
        self.resumed = self.path.waypoints[self.index]
        self.peak, self.offset = self.resumed.peak, self.resumed.seconds
        return copy.deepcopy(self.resumed.state)

    def step(self, peak: float, cut: bool) -> None:
        """A trial removal reached ``peak``; ``cut``: the target stopped it (a larger target would go on)."""
        self.peak = max(self.peak, peak)
        self.cut = self.cut or cut

    def waypoint(self, state: dict) -> None:
        """Record the loop state after an accepted step, if this walk is at the end of the shared path."""
        self.index += 1
        if self.cut or self.index != len(self.path.waypoints):
            return
        seconds = self.offset + time.perf_counter() - self.started
        self.path.waypoints.append(Waypoint(copy.deepcopy(state), self.peak, seconds))

    def report(self) -> dict | None:
        """What the report says about sharing: where this call resumed and the walk time it did not repeat."""
        if self.resumed is None:
            return None
        removed = self.resumed.state.get("log", [{}])[-1].get("removed")
        return {"resumed_at": removed, "shared_seconds": round(self.resumed.seconds, 3)}


class SharedPaths:
    """Paths (and the first scores they start from) by key (model weights, samples, method, seed, target
    kind), the ``limit`` most recent kept."""

    def __init__(self, limit: int = 8):
        self.limit, self.paths, self.scores = limit, OrderedDict(), OrderedDict()

    def log(self, key: str, target: float) -> PathLog:
        return PathLog(self._recent(self.paths, key, Path), target)

    def first_scores(self, key: str, compute) -> tuple[object, float]:
        """The criterion's scores before the walk: computed once per key, then copies. Returns the scores and
        the seconds their computation took when they come from an earlier call (0.0 when computed now)."""
        if key in self.scores:
            scores, seconds = self._recent(self.scores, key, None)
            return copy.deepcopy(scores), seconds
        started = time.perf_counter()
        scores = compute()
        self._recent(self.scores, key, lambda: (copy.deepcopy(scores), time.perf_counter() - started))
        return scores, 0.0

    def _recent(self, table: OrderedDict, key: str, make):
        value = table.pop(key) if key in table else make()
        table[key] = value
        while len(table) > self.limit:
            table.popitem(last=False)
        return value


@contextmanager
def shared_paths(limit: int = 8):
    """Within this block, step-wise allocations that differ only in their target share their common path."""
    token = _active.set(SharedPaths(limit))
    try:
        yield _active.get()
    finally:
        _active.reset(token)


def active() -> SharedPaths | None:
    return _active.get()


def fingerprint(*parts) -> str:
    """A key over tensors, modules (their weights and buffers) and plain values."""
    digest = hashlib.blake2b(digest_size=16)

    def add_tensor(tensor: torch.Tensor) -> None:
        digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())

    for part in parts:
        if isinstance(part, torch.nn.Module):
            digest.update(type(part).__qualname__.encode())
            for name, tensor in part.state_dict().items():
                digest.update(name.encode())
                add_tensor(tensor)
        elif isinstance(part, torch.Tensor):
            add_tensor(part)
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()

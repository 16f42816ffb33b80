"""What a sweep has left, without running anything: its jobs done, failed, reusable from the sweeps beside it,
in progress and still to run, with an estimate of the CPU time left from jobs of the same kind already measured.

Long sweeps run for days on a small machine; this answers "how far along is it, and how long is left?".
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import checkpoint_progress, job_checkpoint
from .claims import family_id, live_families, live_processes
from .config import TRAINING_KINDS, Cell, SweepConfig
from .runner import read_results
from .scratch import scratch_label
from .sweep import job_families, reusable_rows, selected_jobs, training_dir


@dataclass
class StatusLine:
    """The jobs of one kind (a model's method at one sample count, or a model's training jobs of one kind)."""

    model: str
    what: str  # the method, or "ceiling" / "asca-scratch"
    samples: int | None  # None for training jobs
    done: int = 0
    failed: int = 0  # an error row: run again only with --retry-failed
    reusable: int = 0  # measured by a sweep beside this one: copied when this sweep runs, not run again
    running: int = 0  # claimed by a live process
    to_run: int = 0
    seconds_each: float | None = None  # estimated wall time of one job, one thread (None: nothing to go by)
    estimated_from: str = ""  # "measured": jobs of this very kind; else the nearest kind measured
    left: float = 0.0  # jobs' worth of work left: a training job resuming from a checkpoint counts its part left
    resumes: str = ""  # how far the checkpoints of unfinished training jobs are, e.g. "9/15"

    @property
    def left_seconds(self) -> float | None:
        """CPU seconds the jobs not yet done need (None without an estimate)."""
        return None if self.seconds_each is None else self.seconds_each * self.left


def _kind(job) -> tuple[str, str, int | None]:
    if isinstance(job, Cell):
        return job.model, job.method, job.samples
    return job.model, "ceiling" if job.key.startswith("ceiling:") else scratch_label(job.gates), None


def _row_kind(row: dict) -> tuple[str, str, int | None] | None:
    if row.get("kind") == "cell":
        return row["cell"]["model"], row["cell"]["method"], row["cell"]["samples"]
    if row.get("kind") in TRAINING_KINDS:
        return row["model"], "ceiling" if row["kind"] == "ceiling" else scratch_label(row.get("gates_schedule")), None
    return None


def _measured_seconds(rows: list[dict]) -> dict[tuple, list[float]]:
    """Wall seconds of every job measured among ``rows`` on this machine's CPU (copies, rows merged from another
    machine and jobs run on a GPU left out), by kind.

    A training job's time is scaled to one epoch, so ceilings of other epoch counts still tell.
    """
    seconds: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        kind = _row_kind(row)
        if (kind is None or row.get("status") != "ok" or row.get("reused_from") or row.get("merged_from")
                or row.get("device") or not row.get("wall_seconds")):
            continue
        if kind[2] is None:  # training job: per epoch
            seconds[kind].append(row["wall_seconds"] / max(1, row.get("epochs", 1)))
        else:
            seconds[kind].append(row["wall_seconds"])
    return seconds


def estimate(measured: dict[tuple, list[float]], model: str, what: str, samples: int | None,
             epochs: int = 1) -> tuple[float | None, str]:
    """Seconds one job of this kind takes on one thread, and what the figure comes from.

    Jobs of the very kind measured give their mean. Otherwise, for a cell on
    the same model, the first of: the same method at the nearest sample count;
    the method sharing most of its recovery parts (what follows the criterion:
    ``l1+mir`` for ``l1+fskd+mir``), then the same criterion, then the fewest
    other parts, at the nearest sample count (the mean of methods equally
    alike); the mean of all methods at this sample count.
    A training job is estimated per epoch from training jobs of its kind and model (a variant of one, from
    its plain form).
    """
    own = measured.get((model, what, samples))
    if own:
        return statistics.fmean(own) * (epochs if samples is None else 1), "measured"
    if samples is None:  # a variant of a training job (asca-scratch (price=channels)): its plain form's time
        plain = what.partition(" (")[0]
        alike = measured.get((model, plain, None)) if plain != what else None
        return (statistics.fmean(alike) * epochs, plain) if alike else (None, "")
    criterion, *parts = what.split("+")

    def likeness(kind: str) -> tuple[int, int, int]:  # recovery parts shared, same criterion, fewer parts besides
        other_criterion, *other_parts = kind.split("+")
        return len(set(parts) & set(other_parts)), other_criterion == criterion, -len(set(other_parts) - set(parts))

    kinds = [(w, n) for (m, w, n) in measured if m == model and n is not None and likeness(w)[:2] != (0, False)]

    def rank(kind: tuple[str, int]) -> tuple:  # the most alike first, then the nearest sample count
        return tuple(-x for x in likeness(kind[0])), abs(kind[1] - samples), kind[1]

    if kinds:  # methods equally alike at the same sample count are averaged
        best = min(map(rank, kinds))
        ties = sorted(k for k in kinds if rank(k) == best)
        n = ties[0][1]
        return (statistics.fmean(statistics.fmean(measured[(model, w, n)]) for w, _ in ties),
                f"{', '.join(w for w, _ in ties)} at {n} samples")
    others = [statistics.fmean(v) for (m, w, n), v in measured.items() if (m, n) == (model, samples)]
    if others:
        return statistics.fmean(others), f"other methods at {samples} samples"
    return None, ""


def sweep_status(config: SweepConfig, seeds=None, models=None, methods=None) -> list[StatusLine]:
    """One line per kind of job of ``config``, in the config's order; ``seeds`` / ``models`` / ``methods`` count
    only the jobs a sweep run with the same filter would run (:func:`~.sweep.selected_jobs`)."""
    jobs = selected_jobs(config, seeds, models, methods)
    results = Path(config.results)
    rows = {r["key"]: r for r in read_results(results)}
    done = {k: r for k, r in rows.items() if r.get("status") == "ok"}
    # Reuse needs this sweep's teacher rows; a sweep not started yet has none, so for the estimate its teachers
    # are taken to measure as in the sweeps beside it (the sweep itself checks that when it runs).
    beside = [row for path in sorted(results.parent.glob("*.jsonl")) for row in read_results(path)]
    with_teachers = dict(done)
    for row in beside:
        if row.get("kind") == "teacher" and row.get("status") == "ok":
            with_teachers.setdefault(row["key"], row)
    missing = {j.key: j for j in jobs if j.key not in done}
    reusable = {r["key"] for r in reusable_rows(config, missing, with_teachers)}
    live = live_families(results)
    running = {j.key for family in job_families(jobs) if family_id([j.key for j in family]) in live for j in family}
    measured = _measured_seconds(beside)
    work_dir = training_dir(config)
    lines: dict[tuple, StatusLine] = {}
    for job in jobs:
        model, what, samples = _kind(job)
        line = lines.setdefault((model, what, samples), StatusLine(model, what, samples))
        if job.key in done:
            line.done += 1
        elif rows.get(job.key, {}).get("status") == "error":
            line.failed += 1
        elif job.key in reusable:
            line.reusable += 1
        else:
            if job.key in running:
                line.running += 1
            else:
                line.to_run += 1
            progress = checkpoint_progress(job_checkpoint(work_dir, job.key)) if samples is None else None
            line.left += 1 - progress[0] / progress[1] if progress else 1
            if progress:
                line.resumes = ", ".join(filter(None, (line.resumes, f"{progress[0]}/{progress[1]}")))
        if line.seconds_each is None:
            line.seconds_each, line.estimated_from = estimate(measured, model, what, samples, getattr(job, "epochs", 1))
    return list(lines.values())


def wall_seconds_left(lines: list[StatusLine], processes: int) -> float:
    """The least wall time the estimated jobs left need on ``processes`` processes: their CPU time shared out
    evenly, but never less than the longest single job left (a job runs on one process)."""
    known = sum(line.left_seconds or 0 for line in lines)
    longest = max((line.seconds_each * min(1.0, line.left) for line in lines if line.left_seconds), default=0.0)
    return max(known / processes, longest)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{max(1, round(seconds / 60))} min"


def status_markdown(config: SweepConfig, lines: list[StatusLine], chosen: str = "") -> str:
    """The status as a markdown table and a one-line total; ``chosen`` names the filter the lines were counted
    with (``--methods l1+kd``), if any."""
    out = [f"# {config.name}: status" + (f" of the jobs {chosen} chooses (training jobs run with any)" if chosen else ""),
           "",
           "| model | job | samples | done | failed | reusable | running | to run | est. CPU time left |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for line in lines:
        left = line.left_seconds
        nothing = f"no {line.what} job measured yet" if line.samples is None else "no job on this model measured yet"
        guess = "–" if not line.running + line.to_run else (nothing if left is None else _duration(left) + (
            "" if line.estimated_from == "measured" else f" (≈ {line.estimated_from})")) \
            + (f"; checkpoints at {line.resumes} steps" if line.resumes else "")  # known even with no estimate
        out.append(f"| {line.model} | {line.what} | {'' if line.samples is None else line.samples} | {line.done} "
                   f"| {line.failed} | {line.reusable} | {line.running} | {line.to_run} | {guess} |")
    known = sum(line.left_seconds or 0 for line in lines)
    without = sum(line.running + line.to_run for line in lines if line.left_seconds is None)
    total = sum(line.done + line.failed + line.reusable + line.running + line.to_run for line in lines)
    finished = sum(line.done for line in lines)
    if not any(line.running or line.to_run for line in lines):
        failed = sum(line.failed for line in lines)
        reusable = sum(line.reusable for line in lines)
        return "\n".join(out + ["", f"{finished} of {total} jobs done; nothing left to run" + "".join(
            f"; {count} {what}" for count, what in ((reusable, "to copy from the sweeps beside it when it runs"),
                                                    (failed, "failed (--retry-failed runs them again)")) if count)
            + "."]) + "\n"
    out += ["", f"{finished} of {total} jobs done; about {_duration(known)} of CPU time left (one thread per job, by "
            f"the wall times of jobs measured in {Path(config.results).parent}; a training job with a checkpoint counts "
            "the part it has left)" + (f", plus {without} jobs of kinds with nothing measured yet"
                                                          if without else "") + "."]
    processes = live_processes(config.results)
    if processes and known:
        out.append(f"With the {processes} process{'es' if processes > 1 else ''} running it now: about "
                   f"{_duration(wall_seconds_left(lines, processes))} of wall time at best.")
    return "\n".join(out) + "\n"

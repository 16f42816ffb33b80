"""Driving a sweep: resume, execute (in-process or on Ray), progress, report."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ..allocation.paths import shared_paths
from ..devices import resolve_device
from ..files import absolute_spec, write_text_atomic
from ..metrics import loaded_source, source_digest
from .ceiling import CeilingJob
from .claims import family_id, try_claim
from .config import JOB_KINDS, Cell, SweepConfig, gate_changes
from .plots import plot
from .relatency import apply_remeasured
from .report import render
from .runner import (
    _append_line,
    append_result,
    inferred_stop,
    read_results,
    results_lock,
    run_teacher,
    teacher_key,
)
from .scratch import ScratchJob


def _progress(total: int, enabled: bool):
    """A rich progress bar with ETA when on a terminal; plain log lines otherwise."""
    import sys

    if enabled and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        return bar
    return None


@contextmanager
def stop_between_jobs(log):
    """A first Ctrl-C (or SIGTERM) asks the sweep to stop after the job in progress; a second aborts it.

    Yields a one-element list that turns true when a stop was asked for. A
    long cell keeps its work; the sweep then writes its report as usual. Off
    the main thread (where signals cannot be caught) it does nothing.
    """
    asked = [False]
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def handler(signum, frame):
        if asked[0]:
            raise KeyboardInterrupt
        asked[0] = True
        log(f"{signal.Signals(signum).name}: stopping after the job in progress (again to abort it now)")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def training_dir(config: SweepConfig) -> str:
    """Where the sweep's training jobs keep their checkpoints (absolute: Ray workers need not share our directory)."""
    return str(Path(config.results).resolve()) + ".partial"


def sweep_jobs(config: SweepConfig) -> list:
    """Every job of the sweep: its training jobs (full-data ceilings, asca-scratch) first, then its cells.

    Training jobs checkpoint every epoch under ``RESULTS.partial/``, so a sweep
    stopped or killed mid-job resumes it, whichever process takes it over.
    """
    work_dir = training_dir(config)
    jobs: list = []
    if config.ceiling:  # first: the longest jobs, and with Ray they run beside the cells
        epochs, lr = config.ceiling.get("epochs", 3), config.ceiling.get("lr", 0.01)
        blocks = config.ceiling.get("blocks")  # the block criterion for block-count ceilings (none: no such ceiling)
        jobs += [CeilingJob(model, config.dataset, target, epochs, lr, config.eval_limit, work_dir, blocks)
                 for model in config.models for target in config.targets
                 if "blocks" not in target or (blocks and set(target) == {"blocks"})]
    if config.scratch:
        jobs += [ScratchJob(model, config.dataset, target, config.scratch.get("epochs", 30), config.eval_limit,
                            work_dir, gate_changes(entry)) for model in config.models
                 for entry in config.scratch.get("gates", [{}]) if model in entry.get("models", [model])
                 for target in config.targets if "blocks" not in target]
    return jobs + config.cells()


def run_sweep(config: SweepConfig, executor: str = "local", address: str | None = None, retry_failed: bool = False,
              progress: bool = True, log=print, shard: tuple[int, int] | None = None,
              seeds: Sequence[int] | None = None, models: Sequence[str] | None = None,
              methods: Sequence[str] | None = None, device=None) -> dict:
    """Run every missing cell of ``config``, append results, then write the report and plots.

    ``device="cuda"`` compresses and trains the jobs on that GPU (each row
    says so); nothing is timed there, so their speed-ups come from
    ``--remeasure-latency`` on the CPU. Teachers are measured on the CPU, so
    results files of such runs merge with the CPU's (:func:`merge_results`).

    ``seeds`` / ``models`` / ``methods`` run only the jobs of those seeds /
    models / methods this time (training jobs have no seed or method and run
    whenever their model does), e.g. one seed of every setting, or the methods
    a comparison needs, before the others; the report covers every row.

    ``shard=(i, n)`` runs every n-th family of jobs from the i-th (0-based),
    then helps with the other shards' unstarted families, so n processes on
    one machine share a sweep and its results file and finish together. Each
    process claims a family before running it (:mod:`.claims`): processes
    sharing a sweep, sharded or not, never run a job twice.
    """
    if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard {shard[0]}/{shard[1]}: want I/N with 0 <= I < N")
    device = None if device is None else resolve_device(device)  # a GPU that is not there: named before any job
    if device is not None and executor != "local":
        raise ValueError("--device runs the jobs of this process; with Ray, each worker's devices are its own")
    jobs = selected_jobs(config, seeds, models, methods)
    # Under the lock, so that of several shards one measures each teacher and copies each reusable row.
    with results_lock(config.results):
        done = {r["key"]: r for r in read_results(config.results)}
        unavailable = _measure_teachers(config, dict.fromkeys(job.model for job in jobs), done, log)
        missing = {j.key: j for j in jobs if j.key not in done and j.model not in unavailable}
        for row in reusable_rows(config, missing, done):
            _append_line(Path(config.results), row)
            done[row["key"]] = row
        reused = [r for r in done.values() if r.get("reused_from")]
        if reused:
            log(f"{config.name}: {len(reused)} jobs measured by the sweeps beside this one, reused")
    index, count = shard or (0, 1)

    def needs_run(job, rows: dict) -> bool:
        return job.model not in unavailable and (
            job.key not in rows or (retry_failed and rows[job.key].get("status") != "ok"))

    families = shard_order(jobs, index, count)
    own = families[:len(shard_families(jobs, index, count))]
    own_ids = {id(f) for f in own}
    # jobs of each family counted in the progress total: its unfinished ones for own families at first
    counted = {id(f): sum(needs_run(j, done) for j in f) if id(f) in own_ids else 0 for f in families}
    todo = [j for f in own for j in f if needs_run(j, done)]
    log(f"{config.name}{f' shard {index}/{count}' if shard else ''}: {sum(map(len, own)) - len(todo)} of "
        f"{sum(map(len, own))} jobs already done or waiting for a teacher, {len(todo)} to run ({executor})")
    started = time.time()
    finished = 0
    total = [len(todo)]  # grows when this process helps with another shard's families, shrinks when helped

    def record(row: dict) -> None:
        nonlocal finished
        append_result(config.results, row)
        finished += 1
        rate = (time.time() - started) / finished
        status = row["status"] if row["status"] == "ok" else f"ERROR {row['error']}"
        acc = (f" acc {100 * row['accuracy']:.2f}%" + (f" mIoU {100 * row['mean_iou']:.2f}%" if "mean_iou" in row else "")
               if row["status"] == "ok" else "")
        if bar is None:
            log(f"[{finished}/{total[0]}] {row.get('command', row['key'])}: {status}{acc} "
                f"(ETA {rate * (total[0] - finished) / 60:.1f} min)")

    def claimed_jobs(on_total):
        """Each family's unfinished jobs, once this process holds its claim: own families first, then helping.

        Results are re-read under the lock at each family, so a job another
        process finished meanwhile is not run again, and a family another live
        process claimed is left to it (:mod:`.claims`). Families left to others
        are visited again at the end: one whose process stopped before
        finishing it is taken over rather than left for a later run.
        """
        remaining = families
        while remaining:
            held_elsewhere = []
            for family in remaining:
                with results_lock(config.results):
                    rows = {r["key"]: r for r in read_results(config.results)}
                    pending = [j for j in family if needs_run(j, rows)]
                    mine = bool(pending) and try_claim(config.results, family_id([j.key for j in family]))
                if pending and not mine:
                    held_elsewhere.append(family)
                runs = len(pending) if mine else 0
                if runs != counted[id(family)]:
                    total[0] += runs - counted[id(family)]
                    counted[id(family)] = runs
                    on_total()
                if mine:
                    if id(family) not in own_ids:
                        log(f"{config.name}: helping with {len(pending)} jobs of another shard")
                    yield from pending
            if len(held_elsewhere) == len(remaining):
                return  # the rest is other live processes' work in progress
            remaining = held_elsewhere

    def run_locally(job) -> dict:
        # Other shards append too: read what is there now, a smaller target may have stopped short meanwhile.
        inferred = inferred_stop(job, read_results(config.results)) if isinstance(job, Cell) else None
        if inferred:
            return inferred
        # A sweep running beside this one may have measured the job meanwhile.
        measured = next(iter(reusable_rows(config, {job.key: job}, done)), None)
        if measured is not None:
            log(f"{config.name}: {job.key} measured meanwhile by {measured['reused_from']}, reused")
            return measured
        return job.run(config.eval_limit, config.latency, device)

    why_stopped = "as asked"

    def until_source_changes(jobs, stop):
        """The jobs, until fewprune's files change on disk since this process loaded them: a job run then would be
        measured by the old code under the same key as the new code's, so the sweep stops before it."""
        nonlocal why_stopped
        for job in jobs:
            now = source_digest()
            if now != loaded_source():
                log(f"{config.name}: fewprune's source changed on disk since this sweep started (it runs "
                    f"{loaded_source()}, the files are {now}): stopping before the next job; run it again to go on "
                    f"with the new code")
                why_stopped, stop[0] = "for the new code", True
                return
            yield job

    loaded_source()  # the digest of the code this process runs, taken before any job
    bar = _progress(len(todo), progress)
    if executor == "local":
        # One process runs a family's targets in turn: step-wise allocators share their common path.
        with stop_between_jobs(log) as stop, shared_paths():
            if bar is None:
                for job in until_source_changes(claimed_jobs(lambda: None), stop):
                    log(job.describe())
                    record(run_locally(job))
                    if stop[0]:
                        break
            else:
                with bar:
                    task = bar.add_task(config.name, total=len(todo))
                    for job in until_source_changes(claimed_jobs(lambda: bar.update(task, total=total[0])), stop):
                        record(run_locally(job))
                        bar.advance(task)
                        if stop[0]:
                            break
        if stop[0]:
            log(f"{config.name}: stopped {why_stopped} after {finished} of {total[0]} jobs; run again to go on")
            return {**write_report(config), "stopped": True}
    elif executor == "ray":
        from .executors import run_on_ray

        if bar is None:
            stopped = run_on_ray(todo, config, record, address, log=log)
        else:
            with bar:
                task = bar.add_task(config.name, total=len(todo))
                stopped = run_on_ray(todo, config, lambda row: (record(row), bar.advance(task)), address, log=log)
        if stopped:
            return {**write_report(config), "stopped": True}
    else:
        raise ValueError(f"unknown executor {executor!r} (local or ray)")
    return write_report(config)


def _measure_teachers(config: SweepConfig, models, done: dict, log) -> dict[str, str]:
    """Measure and record each of ``models``' teachers that ``done`` (this sweep's rows by key, updated) lacks;
    returns model -> why its teacher could not be loaded (its jobs wait for a later run). Call under the lock."""
    unavailable = {}
    for model in models:
        key = teacher_key(model, config.dataset, config.eval_limit)
        if key not in done:
            try:
                done[key] = run_teacher(model, config.dataset, config.eval_limit, config.latency)
            except Exception as error:  # noqa: BLE001 — one missing teacher must not stop the others' jobs
                unavailable[model] = f"{type(error).__name__}: {error}"
                log(f"{config.name}: skipping {model} this run: {unavailable[model]}")
                continue
            _append_line(Path(config.results), done[key])
    return unavailable


def selected_jobs(config: SweepConfig, seeds: Sequence[int] | None = None,
                  models: Sequence[str] | None = None, methods: Sequence[str] | None = None) -> list:
    """The sweep's jobs of ``seeds``, ``models`` and ``methods`` (None: all, named as the config names them); one
    the config lacks is an error. Training jobs have no seed or method: they are kept with their model."""
    if models is not None:  # a model file's path as in the config, read from its folder
        models = [absolute_spec(model, Path(config.source).parent) for model in models]
    for name, chosen, known in (("seed", seeds, config.seeds), ("model", models, config.models),
                                ("method", methods, config.methods)):
        unknown = [value for value in chosen or () if value not in known]
        if unknown:
            raise ValueError(f"{config.name}: {name} {', '.join(map(str, unknown))} is not in the sweep "
                             f"(its {name}s: {', '.join(map(str, known))})")
    return [job for job in sweep_jobs(config)
            if (models is None or job.model in models)
            and (seeds is None or getattr(job, "seed", None) is None or job.seed in seeds)
            and (methods is None or not isinstance(job, Cell) or job.method in methods)]


def job_families(jobs: list) -> list[list]:
    """Jobs grouped into families, in order: one cell at every target of one kind (same model, method,
    samples, seed, options), in the config's target order; any other job is a family of its own.

    A family runs in one process, smaller target first, so a method that stops
    short at a small target spares the larger ones (:func:`~.runner.inferred_stop`)
    and step-wise allocators resume the walk they took.
    """
    families: dict = {}
    for job in jobs:
        family = (tuple((k, str(v)) for k, v in sorted(job.__dict__.items()) if k != "target") + (tuple(job.target),)
                  if isinstance(job, Cell) else job.key)
        families.setdefault(family, []).append(job)
    return list(families.values())


def shard_families(jobs: list, index: int, count: int) -> list[list]:
    """The families of shard ``index`` of ``count``: every count-th family from the index-th."""
    return [members for i, members in enumerate(job_families(jobs)) if i % count == index]


def shard_order(jobs: list, index: int, count: int) -> list[list]:
    """The families in the order shard ``index`` takes them: its own, then the other shards' from the last.

    Once its own are done a shard helps with the families the others have not
    started, taking them from the far end of the others' lists, so the shards
    of a sweep finish together instead of one idling while another has a queue.
    """
    families = job_families(jobs)
    others = [members for i, members in enumerate(families) if i % count != index]
    return shard_families(jobs, index, count) + others[::-1]


def reusable_rows(config: SweepConfig, missing: dict, done: dict) -> list[dict]:
    """Finished rows of ``missing`` jobs found in the other results files beside this one.

    A job's key fixes what it computes (model, dataset, method, samples,
    target, seed, labels and options; for a ceiling its epochs and learning
    rate), so a row another sweep measured is the same measurement when the
    rest of the protocol matches too: that sweep measured the same teacher to
    the same accuracy on the same test split, and timed latency if this sweep
    wants it. Copies are marked ``reused_from`` with their file's name.
    """
    here = Path(config.results)
    wanted = dict(missing)  # key of a measurement that would do -> the job it stands for
    for job in missing.values():
        twin = label_twin(job)
        if twin is not None:
            wanted.setdefault(twin.key, job)
    found: dict[str, dict] = {}
    for path in sorted(here.parent.glob("*.jsonl")):
        if path.resolve() == here.resolve():
            continue
        for job, row in _measured(config, read_results(path), wanted, done, found):
            reused = {**row, "reused_from": path.name}
            if row["key"] != job.key:  # the label twin's measurement: the same plan and student
                reused.update(key=job.key, cell=job.__dict__, command=job.command(),
                              same_as_labels=row["cell"]["labels"], same_as_key=row["key"])
            found[job.key] = reused
    return list(found.values())


def _measured(config: SweepConfig, rows: list[dict], wanted: dict, done: dict, found: dict):
    """``(job, row)`` for each finished row of ``rows`` that measured a ``wanted`` job (key -> job) not yet
    ``found``, on a teacher measured to the accuracy ``done`` holds for it, with latency if the sweep times it."""
    same_teachers = _same_teachers(rows, done)
    for row in rows:
        job = wanted.get(row.get("key"))
        if (job is None or job.key in found or row.get("status") != "ok" or job.model not in same_teachers
                or (config.latency and row.get("kind") == "cell" and not row.get("latency")
                    and not row.get("merged_from"))):  # a merged row's timings wait for a re-timing here
            continue
        yield job, row


def _same_teachers(rows: list[dict], done: dict) -> set[str]:
    """The models whose teacher ``rows`` measured to the accuracy ``done`` (this sweep's rows by key) holds."""
    return {r["model"] for r in rows if r.get("kind") == "teacher" and r.get("status") == "ok"
            and r["key"] in done and done[r["key"]].get("accuracy") == r.get("accuracy")}


def merge_results(config: SweepConfig, paths: Sequence[str | Path], log=print) -> dict:
    """Copy into this sweep's results the jobs it lacks (or that failed here) that ``paths`` finished: results
    files of the same sweep run elsewhere, e.g. its shards on other machines.

    A row is taken only when its teacher was measured there to the accuracy
    measured here (a missing teacher is measured here first), so both ran the
    same protocol. Copies are marked ``merged_from``; their timings came from
    another machine, so they are kept as ``latency_elsewhere`` and the
    report gives their speed-ups only once ``--remeasure-latency`` has timed
    them here beside their teacher. Quiet re-timings (``kind: latency``) are
    never merged. Returns how many rows came from each file.
    """
    with results_lock(config.results):
        done = {r["key"]: r for r in read_results(config.results)}
        unavailable = _measure_teachers(config, config.models, done, log)
        if unavailable:  # rows are compared with this machine's teachers: each must be measured here first
            raise ValueError(f"{config.name}: cannot merge before every teacher is measured here: "
                             + "; ".join(f"{model}: {why}" for model, why in unavailable.items()))
        jobs = {job.key: job for job in sweep_jobs(config)}
        merged: dict[str, int] = {}
        for path in map(Path, paths):
            if path.resolve() == Path(config.results).resolve():
                raise ValueError(f"{path} is this sweep's own results file")
            rows = read_results(path)
            if not rows:
                raise FileNotFoundError(f"{path} holds no results (missing, or not a results file)")
            wanted = {k: job for k, job in jobs.items() if done.get(k, {}).get("status") != "ok"}
            same = _same_teachers(rows, done)
            for r in rows:
                if r.get("kind") == "teacher" and r["model"] in config.models and r["model"] not in same:
                    here = done.get(r["key"], {}).get("accuracy")
                    log(f"{config.name}: {path.name} measured {r['model']} to {r.get('accuracy')}, not {here} as "
                        "here: its rows of that teacher are left out")
            found: dict[str, dict] = {}
            for job, row in _measured(replace(config, latency=False), rows, wanted, done, found):
                copied = {k: v for k, v in row.items() if k not in ("latency", "reused_from")}
                found[job.key] = {**copied, "merged_from": path.name,
                                  **({"latency_elsewhere": row["latency"]} if row.get("latency") else {})}
            for row in found.values():
                _append_line(Path(config.results), row)
                done[row["key"]] = row
            merged[path.name] = len(found)
            log(f"{config.name}: {len(found)} jobs merged from {path}")
    return merged


def label_twin(job) -> Cell | None:
    """The same cell with the labels shown instead of hidden (or the reverse), when its method reads no label.

    Such a method gives the same plan and student either way
    (:func:`fewprune.methods.reads_labels`), so either measurement stands for both.
    """
    from ..methods import reads_labels

    if not isinstance(job, Cell):
        return None
    try:
        if reads_labels(job.recipe):
            return None
    except (KeyError, ValueError):  # an unknown method: its cell fails on its own, with the message
        return None
    return replace(job, labels=not job.labels)


def alongside_rows(config: SweepConfig) -> tuple[list[dict], object]:
    """The ``alongside`` sweep's finished cells that match this sweep's settings, relabelled "method (its name)".

    Same model, dataset, method, samples, target and seed: only what the two
    sweeps differ in (e.g. ``round_to``) tells the rows apart.
    """
    other = SweepConfig.read(config.alongside)
    label = lambda method: f"{method} ({other.name})"  # noqa: E731
    wanted = {(m, config.dataset, meth, n, json.dumps(t, sort_keys=True), seed)
              for m in config.models for meth in config.methods for n in config.samples for t in config.targets
              for seed in config.seeds}
    extra = []
    for row in apply_remeasured(read_results(other.results)):
        c = row.get("cell") or {}
        if row.get("kind") != "cell" or row.get("status") != "ok" or (
                c.get("model"), c.get("dataset"), c.get("method"), c.get("samples"),
                json.dumps(c.get("target"), sort_keys=True), c.get("seed")) not in wanted:
            continue
        extra.append({**row, "cell": {**c, "method": label(c["method"])}})
    return extra, label


def current_rows(config: SweepConfig) -> list[dict]:
    """The results file's rows, less those of jobs the config no longer has, with quiet re-timings applied."""
    keys = {job.key for job in sweep_jobs(config)}
    return apply_remeasured([r for r in read_results(config.results)
                             if r.get("kind") not in JOB_KINDS or r.get("key") in keys])


def write_report(config: SweepConfig) -> dict:
    """Report and plots from the rows of the config's current jobs (rows of jobs since removed are ignored)."""
    rows = current_rows(config)
    methods = list(config.methods)
    if config.alongside:
        extra, label = alongside_rows(config)
        rows += extra
        present = {r["cell"]["method"] for r in extra}
        methods = [name for m in config.methods for name in (m, label(m)) if name == m or name in present]
    report_path = Path(config.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    plots = plot(config, rows, report_path.parent / "plots", methods)
    text = render(config, rows, methods)
    text += "\n" + "\n".join(f"![{p.stem}](plots/{p.name})" for p in plots) + "\n"
    write_text_atomic(report_path, text)  # shards finishing together may both write it
    return {"report": str(report_path), "plots": [str(p) for p in plots], "rows": len(rows)}

"""Running a sweep: each cell compresses, evaluates on the test split, and appends one JSON line.

Finished cells (by key) are skipped on a re-run, so an interrupted sweep
resumes; a failing cell records its error and the sweep goes on.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch

from .config import Cell


def read_results(path: str | Path) -> list[dict]:
    """All complete JSON lines of a results file (a torn last line from a crash is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


@contextmanager
def results_lock(path: str | Path):
    """Hold an exclusive lock beside a results file: shards of one sweep append to it from several processes."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_result(path: str | Path, row: dict) -> None:
    """Append one line and fsync it, so a finished cell survives a crash right after."""
    with results_lock(path):
        _append_line(Path(path), row)


def _append_line(path: Path, row: dict) -> None:
    torn = False
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    with open(path, "a") as f:
        if torn:  # a crash cut the last line short: end it so the new line stays whole
            f.write("\n")
        f.write(json.dumps(row, sort_keys=True, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure_model(model, test_set, example, latency: bool) -> dict:
    """A result row's measurements (``test_samples``: ``samples`` in a row means the few-shot count)."""
    from .. import metrics

    measured = metrics.measure(model, test_set, example, latency_batches=(1, 64) if latency else (), progress=False)
    measured["test_samples"] = measured.pop("samples")
    return measured


HELD_OUT = 0.2  # of an image folder with no test split: the fixed part every job of a sweep is judged on


def _load_data(dataset: str, eval_limit: int | None, model: str | None = None):
    """The train and test splits (the test split cut to ``eval_limit`` images); an image folder's images read as
    ``model`` takes its input (``fewprune prune`` does the same). A folder with no test split is cut once (seed 0)
    into a held-out fifth, the test set of every job and teacher, and the rest, which the samples come from."""
    from .. import data
    from ..cli.inputs import model_input_convention

    options = (model_input_convention(model) or {}) if dataset.startswith("imagefolder:") else {}
    train = data.load(dataset, "train", **options)
    test = data.load(dataset, "test", **options)
    if test.info.extra.get("same_images_every_split"):
        train, test = data.split_off(train, HELD_OUT, seed=0)
    if eval_limit is not None and eval_limit < len(test):
        test = data.few_shot(test, n=eval_limit, seed=0)
    return train, test


def _teacher(spec: str, info):
    from ..cli.inputs import load_model_for

    return load_model_for(spec, info)


def on_cpu(device) -> bool:
    """Whether a job runs on the CPU (``device`` None or cpu): only there are its timings the CPU's."""
    return device is None or torch.device(device).type == "cpu"


def run_cell(cell: Cell, eval_limit: int | None = None, latency: bool = True, device=None) -> dict:
    """Compress and measure one cell in this process, on ``device`` (the CPU by default); returns its result row
    (errors included). On a GPU nothing is timed: the reports' speed-ups are the CPU's (``--remeasure-latency``)."""
    from .. import api, data
    from ..allocation import StoppedShort, Target
    from ..metrics import versions

    started = time.time()
    row: dict = {"kind": "cell", "key": cell.key, "cell": cell.__dict__, "command": cell.command(),
                 **({} if on_cpu(device) else {"device": str(device)})}
    try:
        train, test = _load_data(cell.dataset, eval_limit, cell.model)
        few = data.few_shot(train, n=None if cell.per_class else cell.samples,
                            per_class=cell.samples if cell.per_class else None, seed=cell.seed)
        teacher = _teacher(cell.model, train.info)
        cpu_started = time.process_time()  # this process's CPU time: unlike wall time, not stretched by other load
        result = api.compress(teacher, few, method=cell.recipe, target=Target(**cell.target), seed=cell.seed,
                              labels=cell.labels, progress=False, round_to=cell.round_to, min_width=cell.min_width,
                              device=device)
        compress_cpu_seconds = round(time.process_time() - cpu_started, 3)
        example = few.tensors()[0][:1]
        row.update(measure_model(result.student, test, example, latency and on_cpu(device)))
        row.update(
            status="ok",
            few_shot_hash=few.indices_hash(),
            macs_reduction=result.report["macs_reduction"],
            params_reduction=result.report["params_reduction"],
            teacher_macs=result.report["teacher"]["macs"],
            compress_seconds=result.report["wall_seconds"],
            compress_cpu_seconds=compress_cpu_seconds,  # summed over threads: ≈ wall × threads when nothing competes
            # what an earlier target of this family computed for this one (shared paths): its first scores and
            # the common part of its step-wise walk, not re-run
            shared_path_seconds=result.report.get("allocation", {}).get("shared_path", {}).get("shared_seconds", 0.0)
            + result.report.get("shared_scores", {}).get("shared_seconds", 0.0),
            timings=result.report["timings"],
            plan_removed={g: len(r) for g, r in result.plan.removed.items()},
            dropped_blocks=result.plan.dropped_blocks,
        )
    except Exception as err:  # a failed cell is data, not the end of the sweep
        row.update(status="error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=4))
        if isinstance(err, StoppedShort):
            row["reached"] = err.reached  # a larger target of this kind would stop here too
    row.update(wall_seconds=round(time.time() - started, 2), peak_rss_mb=_peak_rss_mb(), versions=versions(),
               threads=torch.get_num_threads())
    return row


def inferred_stop(cell: Cell, rows: list[dict]) -> dict | None:
    """The row of ``cell`` when a smaller target of the same kind, same everything else, already stopped short.

    A method that stops by its own rule (:class:`~fewprune.allocation.StoppedShort`)
    follows the same path whatever the target, so a larger target stops at the same
    point: the row says so, names the cell it is inferred from, and costs nothing.
    """
    if len(cell.target) != 1:
        return None
    (kind, value), = cell.target.items()
    others = {k: v for k, v in cell.__dict__.items() if k not in ("target", "plugins")}  # (plugins: where parts live)
    for row in rows:
        c = row.get("cell") or {}
        if (row.get("kind") == "cell" and row.get("status") == "error" and row.get("reached") is not None
                and not row.get("inferred_from") and set(c.get("target", {})) == {kind}
                and c["target"][kind] < value and row["reached"] < value
                and {k: c.get(k) for k in others} == others):
            from ..metrics import versions

            return {"kind": "cell", "key": cell.key, "cell": cell.__dict__, "command": cell.command(),
                    "status": "error", "reached": row["reached"], "inferred_from": row["key"],
                    "error": f"{row['error']} (inferred, not run: the {kind} {c['target'][kind]:g} cell of this "
                             "seed stopped there, and this method's path does not depend on the target)",
                    "wall_seconds": 0.0, "versions": versions(), "threads": torch.get_num_threads()}
    return None


def teacher_key(model: str, dataset: str, eval_limit: int | None) -> str:
    return f"teacher:{model}:{dataset}:{eval_limit}"


def run_teacher(model: str, dataset: str, eval_limit: int | None, latency: bool) -> dict:
    from ..metrics import versions

    train, test = _load_data(dataset, eval_limit, model)
    teacher = _teacher(model, train.info)
    row = {"kind": "teacher", "key": teacher_key(model, dataset, eval_limit), "model": model, "dataset": dataset}
    row.update(measure_model(teacher, test, train[0][0].unsqueeze(0), latency))
    row.update(status="ok", versions=versions(), threads=torch.get_num_threads())
    return row

"""Latency measured again, on a quiet machine, for the structures a sweep produced.

Cells time their student while other cells may be training beside them, so
their latency columns are only as good as the machine was quiet. Latency
depends on the structure alone (the widths and dropped blocks, not the
weights), so each finished cell's structure is rebuilt from its result row
and timed back to back with its teacher, one pair at a time, on every core
given; so is each training job's (full-data ceilings, asca-scratch). The rows
are appended to the results file (``kind: latency``) and the report's
speed-ups use them in place of the job's own timings.
"""

from __future__ import annotations

import copy
import json
import time

import torch

from .config import JOB_KINDS, SweepConfig
from .runner import _load_data, _teacher, append_result, read_results

ROUNDS = 5  # teacher-then-student rounds per batch size
PROTOCOL = 2  # 1: two interleaved rounds, fastest of each; 2: the median-ratio round of ROUNDS (older rows re-measured)


def latency_key(cell_key: str) -> str:
    return f"latency:{cell_key}"


def removed_counts(row: dict, teacher: torch.nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Channels removed per group in the row's structure.

    Rows record it (``plan_removed``), except full-data ceilings measured
    before they did: a width ceiling's structure is data-free L1 pruning of the
    teacher, computed again here; a block-count ceiling removes no channel.
    """
    if "plan_removed" in row:
        return row["plan_removed"]
    if row.get("kind") == "ceiling":
        if set(row["target"]) == {"blocks"}:
            return {}
        if row.get("structure", "l1") == "l1":
            from .. import api
            from ..allocation import Target

            plan = api.compress(teacher, (example, None), method="l1", target=Target(**row["target"]), labels=False,
                                progress=False).plan
            return {g: len(r) for g, r in plan.removed.items()}
    raise ValueError(f"{row['key']}: the row does not record its structure (plan_removed); run the job again")


def rebuilt_student(teacher: torch.nn.Module, example: torch.Tensor, row: dict, space=None) -> torch.nn.Module:
    """A model with the widths and dropped blocks of the row's student (its weights are the teacher's, cut).

    ``space`` is the teacher's :class:`~fewprune.structure.PruningSpace` when the caller already has it.
    """
    from ..structure import Plan, PruningSpace

    space = space or PruningSpace(teacher, example)
    removed = {gid: list(range(count)) for gid, count in removed_counts(row, teacher, example).items() if count}
    plan = Plan(input_shape=tuple(example.shape[1:]), removed=removed, kinds={g.id: g.kind for g in space.groups},
                sizes={g.id: g.size for g in space.groups}, dropped_blocks=list(row.get("dropped_blocks") or []))
    return plan.apply(copy.deepcopy(teacher).eval())


def remeasure(config: SweepConfig, threads: int | None = None, log=print, again: bool = False) -> int:
    """Time every finished job's structure and its teacher back to back; returns how many were measured.

    Jobs already re-timed under this protocol are skipped, unless ``again``:
    then every job is timed anew, and the new rows supersede the earlier ones
    (e.g. ones taken while something else was running).
    """
    from ..metrics import macs, paired_speedup, versions
    from ..structure import PruningSpace
    from .sweep import sweep_jobs

    if threads:
        torch.set_num_threads(threads)
    rows = read_results(config.results)
    done = set() if again else {r["key"] for r in rows if r.get("kind") == "latency" and r.get("protocol") == PROTOCOL}
    keys = {job.key for job in sweep_jobs(config)}
    todo = [r for r in rows if r.get("kind") in JOB_KINDS and r.get("status") == "ok" and r["key"] in keys
            and latency_key(r["key"]) not in done]
    teachers: dict[str, tuple] = {}
    timed: dict[str, dict] = {}  # one structure (e.g. L1's at a target, whatever the recovery) is timed once
    for i, row in enumerate(todo, 1):
        model, dataset = (row["cell"]["model"], row["cell"]["dataset"]) if "cell" in row else (row["model"],
                                                                                              row["dataset"])
        if model not in teachers:
            train, _ = _load_data(dataset, 1, model)
            teacher = _teacher(model, train.info).eval()
            example = train[0][0].unsqueeze(0)
            # one dependency graph per model
            teachers[model] = (teacher, example, PruningSpace(teacher, example), macs(teacher, example))
        teacher, example, space, teacher_macs = teachers[model]
        removed = removed_counts(row, teacher, example)
        structure = json.dumps([model, removed, row.get("dropped_blocks") or []], sort_keys=True)
        if structure in timed:
            measured = timed[structure]
            append_result(config.results, {"kind": "latency", "key": latency_key(row["key"]), "cell": row["key"],
                                           **measured, "same_structure_as": measured["first_cell"]})
            continue
        what = row.get("command") or row["key"]
        student = rebuilt_student(teacher, example, {**row, "plan_removed": removed}, space)
        rebuilt = macs(student, example)
        if abs(rebuilt - row["macs"]) > 0.001 * row["macs"]:
            raise RuntimeError(f"the rebuilt structure of {what} has {rebuilt} MACs, the job measured "
                               f"{row['macs']}: the results file does not match this model")
        measured: dict = {"teacher": {}, "student": {}, "speedup_rounds": {}}
        for batch in (1, 64):
            x = example.expand(batch, *example.shape[1:]).contiguous()
            with torch.inference_mode():
                paired = paired_speedup(teacher, student, x, rounds=ROUNDS)
            measured["teacher"][f"batch{batch}"], measured["student"][f"batch{batch}"] = (paired["reference"],
                                                                                          paired["model"])
            measured["speedup_rounds"][f"batch{batch}"] = paired["rounds"]
        measured.update(threads=torch.get_num_threads(), versions=versions(), first_cell=row["key"],
                        protocol=PROTOCOL, measured_at=time.strftime("%Y-%m-%d %H:%M:%S"), plan_removed=removed)
        timed[structure] = measured
        append_result(config.results, {"kind": "latency", "key": latency_key(row["key"]), "cell": row["key"],
                                       **measured})
        speed = measured["teacher"]["batch64"]["median_ms"] / measured["student"]["batch64"]["median_ms"]
        log(f"[{i}/{len(todo)}] {what}: {speed:.2f}× at batch 64 "
            f"(MACs {teacher_macs / row['macs']:.2f}×)")
    return len(todo)


def apply_remeasured(rows: list[dict]) -> list[dict]:
    """Rows of cells and training jobs with their latency replaced by the quiet re-measurement where there is one.

    Each such row also carries ``latency_teacher``, its teacher timed beside it,
    and its structure (``plan_removed``) if it did not record it.
    """
    quiet = {r["cell"]: r for r in rows if r.get("kind") == "latency"}  # the latest row of a job wins
    out = []
    for r in rows:
        if r.get("kind") in JOB_KINDS and r["key"] in quiet:
            timed = quiet[r["key"]]
            structure = {"plan_removed": timed["plan_removed"]} if "plan_removed" in timed else {}
            r = {**structure, **r, "latency": timed["student"],
                 "latency_teacher": timed["teacher"], "latency_remeasured": True,
                 "latency_threads": timed.get("threads"), "latency_protocol": timed.get("protocol", 1)}
        out.append(r)
    return out

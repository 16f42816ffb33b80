"""Latency measured again, on a quiet machine, for the structures a sweep produced.

Cells time their student while other cells may be training beside them, so
their latency columns are only as good as the machine was quiet. Latency
depends on the structure alone (the widths and dropped blocks, not the
weights), so each finished cell's structure is rebuilt from its result row
and timed back to back with its teacher, one pair at a time, on every core
given. The rows are appended to the results file (``kind: latency``) and the
report's speed-ups use them in place of the cell's own timings.
"""

from __future__ import annotations

import copy
import json
import time

import torch

from .config import SweepConfig
from .runner import _load_data, _teacher, append_result, read_results

ROUNDS = 5  # teacher-then-student rounds per batch size
PROTOCOL = 2  # 1: two interleaved rounds, fastest of each; 2: the median-ratio round of ROUNDS (older rows re-measured)


def latency_key(cell_key: str) -> str:
    return f"latency:{cell_key}"


def rebuilt_student(teacher: torch.nn.Module, example: torch.Tensor, row: dict, space=None) -> torch.nn.Module:
    """A model with the widths and dropped blocks of the cell's student (its weights are the teacher's, cut).

    ``space`` is the teacher's :class:`~fewprune.structure.PruningSpace` when the caller already has it.
    """
    from ..structure import Plan, PruningSpace

    space = space or PruningSpace(teacher, example)
    removed = {gid: list(range(count)) for gid, count in row.get("plan_removed", {}).items() if count}
    plan = Plan(input_shape=tuple(example.shape[1:]), removed=removed, kinds={g.id: g.kind for g in space.groups},
                sizes={g.id: g.size for g in space.groups}, dropped_blocks=list(row.get("dropped_blocks") or []))
    return plan.apply(copy.deepcopy(teacher).eval())


def remeasure(config: SweepConfig, threads: int | None = None, log=print, again: bool = False) -> int:
    """Time every finished cell's structure and its teacher back to back; returns how many were measured.

    Cells already re-timed under this protocol are skipped, unless ``again``:
    then every cell is timed anew, and the new rows supersede the earlier ones
    (e.g. ones taken while something else was running).
    """
    from ..metrics import latency, macs, versions
    from ..structure import PruningSpace

    if threads:
        torch.set_num_threads(threads)
    rows = read_results(config.results)
    done = set() if again else {r["key"] for r in rows if r.get("kind") == "latency" and r.get("protocol") == PROTOCOL}
    keys = {c.key for c in config.cells()}
    todo = [r for r in rows if r.get("kind") == "cell" and r.get("status") == "ok" and r["key"] in keys
            and latency_key(r["key"]) not in done]
    teachers: dict[str, tuple] = {}
    timed: dict[str, dict] = {}  # one structure (e.g. L1's at a target, whatever the recovery) is timed once
    for i, row in enumerate(todo, 1):
        model = row["cell"]["model"]
        if model not in teachers:
            train, _ = _load_data(row["cell"]["dataset"], 1)
            teacher = _teacher(model, train.info).eval()
            example = train[0][0].unsqueeze(0)
            teachers[model] = (teacher, example, PruningSpace(teacher, example))  # one dependency graph per model
        teacher, example, space = teachers[model]
        structure = json.dumps([model, row.get("plan_removed"), row.get("dropped_blocks")], sort_keys=True)
        if structure in timed:
            measured = timed[structure]
            append_result(config.results, {"kind": "latency", "key": latency_key(row["key"]), "cell": row["key"],
                                           **measured, "same_structure_as": measured["first_cell"]})
            continue
        student = rebuilt_student(teacher, example, row, space)
        rebuilt = macs(student, example)
        if abs(rebuilt - row["macs"]) > 0.001 * row["macs"]:
            raise RuntimeError(f"the rebuilt structure of {row['command']} has {rebuilt} MACs, the cell measured "
                               f"{row['macs']}: the results file does not match this model")
        measured: dict = {"teacher": {}, "student": {}, "speedup_rounds": {}}
        for batch in (1, 64):
            x = example.expand(batch, *example.shape[1:]).contiguous()
            with torch.inference_mode():
                pairs = [(latency(teacher, x), latency(student, x)) for _ in range(ROUNDS)]
            # The machine's speed drifts by tens of percent over minutes (a shared VM): each round times the
            # teacher and the student back to back, and the round with the median ratio is the one reported.
            ratios = [t["median_ms"] / s["median_ms"] for t, s in pairs]
            middle = sorted(range(ROUNDS), key=lambda i: ratios[i])[ROUNDS // 2]
            measured["teacher"][f"batch{batch}"], measured["student"][f"batch{batch}"] = pairs[middle]
            measured["speedup_rounds"][f"batch{batch}"] = [round(r, 4) for r in ratios]
        measured.update(threads=torch.get_num_threads(), versions=versions(), first_cell=row["key"],
                        protocol=PROTOCOL, measured_at=time.strftime("%Y-%m-%d %H:%M:%S"))
        timed[structure] = measured
        append_result(config.results, {"kind": "latency", "key": latency_key(row["key"]), "cell": row["key"],
                                       **measured})
        speed = measured["teacher"]["batch64"]["median_ms"] / measured["student"]["batch64"]["median_ms"]
        log(f"[{i}/{len(todo)}] {row['command']}: {speed:.2f}× at batch 64 "
            f"(MACs {row['teacher_macs'] / row['macs']:.2f}×)")
    return len(todo)


def apply_remeasured(rows: list[dict]) -> list[dict]:
    """Cell rows with their latency replaced by the quiet re-measurement where there is one.

    Each such row also carries ``latency_teacher``, its teacher timed beside it.
    """
    quiet = {r["cell"]: r for r in rows if r.get("kind") == "latency"}  # the latest row of a cell wins
    out = []
    for r in rows:
        if r.get("kind") == "cell" and r["key"] in quiet:
            r = {**r, "latency": quiet[r["key"]]["student"], "latency_teacher": quiet[r["key"]]["teacher"],
                 "latency_remeasured": True, "latency_threads": quiet[r["key"]].get("threads"),
                 "latency_protocol": quiet[r["key"]].get("protocol", 1)}
        out.append(r)
    return out

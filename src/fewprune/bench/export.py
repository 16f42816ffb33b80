"""A sweep's results as one flat CSV table, for analysis in pandas, R or a spreadsheet.

One line per job of the config (cells and full-data training jobs, failed ones too), with the figures the report
shows — accuracy, reductions, the measured speed-up it uses (the quiet re-timing where there is one) — and what
identifies the job: model, method, samples, target, seed, sample hash, the equivalent command. Fractions stay
fractions (accuracy 0.9511, not 95.11).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..files import write_text_atomic
from .config import JOB_KINDS, SweepConfig
from .report import params_reduction, speedup, standalone_seconds, teachers_by_model
from .scratch import scratch_label

COLUMNS = ("kind", "model", "method", "samples", "target", "seed", "status", "accuracy", "mean_iou",
           "teacher_accuracy", "macs_reduction", "params_reduction", "mac_speedup", "measured_speedup",
           "speedup_timing", "compress_seconds", "compress_cpu_seconds", "train_seconds", "wall_seconds", "threads",
           "few_shot_hash", "key", "command", "error")


def _target_text(target: dict) -> str:
    """``macs=0.5``, ``blocks=2``, ``macs=0.7;blocks=11``: one field, no comma."""
    return ";".join(f"{kind}={value:g}" if isinstance(value, float) else f"{kind}={value}"
                    for kind, value in target.items())


def table_rows(rows: list[dict]) -> list[dict]:
    """One flat dict per job row among ``rows`` (as :func:`~.sweep.current_rows` gives them), in file order."""
    teachers = teachers_by_model(rows)
    out = []
    for r in rows:
        if r.get("kind") not in JOB_KINDS:
            continue
        cell = r.get("cell") or {}
        model = cell.get("model") or r.get("model")
        teacher = teachers.get(model, {})
        if r["kind"] == "cell":
            method = cell["method"]
        else:  # a full-data training job: the structure it fine-tunes, or ASCA from scratch
            method = (f"ceiling ({r.get('structure', 'l1')})" if r["kind"] == "ceiling"
                      else scratch_label(r.get("gates_schedule")))
        reduction = r.get("macs_reduction")
        measured = speedup(r, teacher) if r.get("status") == "ok" else None
        out.append({
            "kind": r["kind"], "model": model, "method": method, "samples": cell.get("samples"),
            "target": _target_text(cell.get("target") or r.get("target") or {}), "seed": cell.get("seed"),
            "status": r.get("status"), "accuracy": r.get("accuracy"), "mean_iou": r.get("mean_iou"),
            "teacher_accuracy": teacher.get("accuracy"), "macs_reduction": reduction,
            "params_reduction": params_reduction(r, teacher),
            "mac_speedup": None if reduction is None or reduction >= 1 else 1 / (1 - reduction),
            "measured_speedup": measured,
            "speedup_timing": None if measured is None else "quiet" if r.get("latency_remeasured") else "as run",
            # a cell's compression as a call of its own (a step-wise walk's shared part added back)
            "compress_seconds": standalone_seconds(r) if "compress_seconds" in r else None,
            "compress_cpu_seconds": r.get("compress_cpu_seconds"), "train_seconds": r.get("train_seconds"),
            "wall_seconds": r.get("wall_seconds"), "threads": r.get("threads"),
            "few_shot_hash": r.get("few_shot_hash"), "key": r["key"], "command": r.get("command"), "error": r.get("error"),
        })
    return out


def write_csv(config: SweepConfig, path: str | Path) -> int:
    """Write the sweep's table to ``path`` (atomically); returns the number of lines below the header."""
    from .sweep import current_rows

    lines = table_rows(current_rows(config))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for line in lines:
        writer.writerow({k: "" if v is None else v for k, v in line.items()})
    write_text_atomic(path, text.getvalue())
    return len(lines)

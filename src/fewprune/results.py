"""Saved results side by side (``fewprune compare``): what each ``fewprune prune`` run measured, read back from its
``report.json``; nothing is measured again."""

from __future__ import annotations

import json
from pathlib import Path

from .allocation import Target
from .metrics import measured_speedup


def summary(directory: str | Path) -> dict:
    """One result's figures as its report recorded them: method, target, samples, the teacher's and the student's
    score on the evaluation images, MACs and params removed, MAC and measured speed-up (batch 64, teacher and
    student timed in the same run) and the compression time."""
    directory = Path(directory)
    report_file = directory / "report.json"
    if not report_file.is_file():
        raise FileNotFoundError(f"{directory} is not a fewprune result (no report.json)")
    report = json.loads(report_file.read_text())
    evaluation = report.get("evaluation")
    if not evaluation:
        raise ValueError(f"{directory} has no evaluation: fewprune.save writes none, and compare shows only what "
                         "`fewprune prune --out` measured (`fewprune eval --model DIRECTORY` measures it on its own, "
                         "if it was saved with architecture=)")
    teacher, student = evaluation.get("teacher", {}), evaluation["student"]  # train --asca evaluates no teacher
    score = next(k for k in ("mean_iou", "accuracy", "agreement") if k in student)
    samples = report.get("samples", {})
    return {
        "result": str(directory), "method": report.get("method"),
        "teacher_model": (report.get("teacher_model") or {}).get("spec"),
        "target": _target_text(report),
        "samples": samples.get("count"), "labels": bool(samples.get("labelled")),
        "seed": report.get("seed"), "dataset": evaluation.get("dataset"), "split": evaluation.get("split"),
        "evaluated_on": student.get("samples"), "score": score,
        "teacher": teacher.get(score, 1.0 if score == "agreement" and teacher else None), "student": student[score],
        "macs_removed": report.get("macs_reduction"), "params_removed": report.get("params_reduction"),
        "mac_speedup": report["teacher"]["macs"] / report["student"]["macs"],
        "measured_speedup": measured_speedup(teacher, student),
        "compress_seconds": report.get("wall_seconds"),
    }


def _target_text(report: dict) -> str:
    """The target as asked for; a speed-up target with the MAC fraction its search chose."""
    if not report.get("target"):
        return ""
    if report.get("requested_target"):
        chosen = report["target"]
        return (f"{Target.from_dict(report['requested_target']).describe()}: "
                + ", ".join(f"-{100 * v:.2f}% {k}" if isinstance(v, float) else f"{v} {k}" for k, v in chosen.items()))
    return Target.from_dict(report["target"]).describe()


COLUMNS = ("result", "method", "target", "samples", "seed", "score", "teacher", "student", "change", "MACs removed",
           "params removed", "speed-up b64 (MACs / measured)", "compress time")


def row_cells(s: dict) -> list[str]:
    """A summary as the text of :data:`COLUMNS`."""
    pct = lambda v: "–" if v is None else f"{100 * v:.2f}"  # noqa: E731
    measured = "–" if s["measured_speedup"] is None else f"{s['measured_speedup']:.2f}×"
    return [s["result"], s["method"] or "", s["target"],
            f"{s['samples']}{'' if s['labels'] else ' (no labels)'}", str(s["seed"]),
            f"{s['score'].replace('_', ' ')} ({s['split']}, {s['evaluated_on']} images)", pct(s["teacher"]),
            pct(s["student"]), "–" if s["teacher"] is None else f"{100 * (s['student'] - s['teacher']):+.2f}",
            f"{100 * s['macs_removed']:.1f}%", f"{100 * s['params_removed']:.1f}%",
            f"{s['mac_speedup']:.2f}× / {measured}", f"{s['compress_seconds']:.0f} s"]


def caveats(summaries: list[dict]) -> list[str]:
    """What makes the rows less comparable than they look: other evaluation images, other scores."""
    notes = []
    if len({(s["dataset"], s["split"], s["evaluated_on"]) for s in summaries}) > 1:
        notes.append("the results were evaluated on different images (dataset, split or count): their scores do not "
                     "compare directly")
    teachers = sorted({str(s["teacher_model"]) for s in summaries})
    if len(teachers) > 1:
        notes.append(f"the results compress different teachers ({', '.join(teachers)})")
    if len({s["score"] for s in summaries}) > 1:
        notes.append("the results report different scores (accuracy, mean IoU, agreement with the teacher)")
    notes.append("each speed-up times the teacher and the student in the same run; runs timed at other moments or "
                 "on a busier machine differ by more than their ratios do")
    return notes


def markdown(summaries: list[dict], command: str) -> str:
    """The comparison as a markdown table, with its caveats and the command that made it."""
    lines = ["# Results side by side", "", f"`{command}` (figures as each result recorded them)", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row_cells(s)) + " |" for s in summaries]
    lines += [""] + [f"- {note}" for note in caveats(summaries)]
    return "\n".join(lines) + "\n"

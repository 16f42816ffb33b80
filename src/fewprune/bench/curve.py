"""Accuracy against the fraction of channels removed, per method, with the area under each curve.

Used without fine-tuning (``l1``, ``taylor``, ``lrp``, ``lrp-aa``, …) it shows
how gracefully a criterion degrades; any registered method works, recovery included.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..allocation.paths import shared_paths
from ..metrics import evaluate, versions
from ..progress import progress_bar


def area(points: list[tuple[float, float]]) -> float:
    """Trapezoidal area under (fraction, accuracy) points, divided by the fraction range: a mean accuracy."""
    points = sorted(points)
    if len(points) < 2:
        return points[0][1] if points else 0.0
    span = points[-1][0] - points[0][0]
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False)) / span


def accuracy_curves(teacher, samples, methods: list[str], fractions: list[float], test_set, seed: int = 0,
                    progress: bool = True) -> dict:
    """For each method and fraction, compress with ``Target(channels=fraction)`` and measure test accuracy.

    A fraction a method cannot reach is recorded with its error, and the curve goes on.
    Step-wise methods (``lrp``, ``lrp-aa``, ``cswap``) walk their path once: each
    fraction resumes where the previous one's walk can be shared (see
    :mod:`fewprune.allocation.paths`), so ``compress_seconds`` is what each point added.
    """
    from .. import api
    from ..allocation import Target

    baseline = evaluate(teacher, test_set, progress=False)
    curves: dict[str, dict] = {}
    jobs = [(m, f) for m in methods for f in sorted(fractions)]
    with shared_paths():
        for method, fraction in progress_bar(jobs, total=len(jobs), description="curve", enabled=progress):
            curve = curves.setdefault(method, {"points": [], "failed": []})
            if fraction == 0:
                curve["points"].append({"fraction": 0.0, "accuracy": baseline["accuracy"],
                                        "per_class": baseline["per_class"], "macs_reduction": 0.0})
                continue
            try:
                result = api.compress(teacher, samples, method=method, target=Target(channels=fraction), seed=seed,
                                      progress=False)
            except (ValueError, FloatingPointError) as err:
                curve["failed"].append({"fraction": fraction, "error": str(err)})
                continue
            measured = evaluate(result.student, test_set, progress=False)
            curve["points"].append({"fraction": fraction, "accuracy": measured["accuracy"],
                                    "per_class": measured["per_class"],
                                    "macs_reduction": result.report["macs_reduction"],
                                    "compress_seconds": result.report["wall_seconds"]})
    # A guarded method may stop early (its failed fractions say why): areas are only comparable over the
    # range every curve reached, so that common area is reported next to each curve's own.
    common = min((max((p["fraction"] for p in c["points"]), default=0.0) for c in curves.values()), default=0.0)
    for curve in curves.values():
        points = [(p["fraction"], p["accuracy"]) for p in curve["points"]]
        curve["auc"] = area(points)
        curve["reached"] = max((x for x, _ in points), default=0.0)
        curve["common_auc"] = area([(x, y) for x, y in points if x <= common + 1e-9])
    return {"teacher_accuracy": baseline["accuracy"], "test_samples": baseline["samples"], "seed": seed,
            "fractions": fractions, "common_range": common, "curves": curves, "versions": versions()}


def write_curves(result: dict, directory: str | Path, title: str) -> list[Path]:
    """curve.json, curve.md (AUC table) and curve.png into ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    (directory / "curve.json").write_text(json.dumps(result, indent=1))
    lines = [f"# {title}", "",
             f"Teacher {100 * result['teacher_accuracy']:.2f}% on {result['test_samples']} test images; seed "
             f"{result['seed']}; AUC = mean accuracy over the fraction range (trapezoids).", "",
             f"| method | AUC (own range) | AUC 0–{100 * result['common_range']:.0f}% (all methods) | "
             + " | ".join(f"{100 * f:.0f}%" for f in result["fractions"]) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in result["fractions"]) + " |"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, curve in result["curves"].items():
        by_fraction = {p["fraction"]: p["accuracy"] for p in curve["points"]}
        cells = [f"{100 * by_fraction[f]:.1f}" if f in by_fraction else "–" for f in result["fractions"]]
        lines.append(f"| {method} | {100 * curve['auc']:.2f} (0–{100 * curve['reached']:.0f}%) | "
                     f"{100 * curve['common_auc']:.2f} | " + " | ".join(cells) + " |")
        xs = sorted(by_fraction)
        ax.plot([100 * x for x in xs], [100 * by_fraction[x] for x in xs], marker="o",
                label=f"{method} (AUC {100 * curve['auc']:.1f})")
    failures = [f"- {m} at {100 * f['fraction']:.0f}%: {f['error']}" for m, c in result["curves"].items()
                for f in c["failed"]]
    if failures:
        lines += ["", "Fractions a method did not reach:", "", *failures]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items())]
    (directory / "curve.md").write_text("\n".join(lines) + "\n")
    ax.set_xlabel("channels removed (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(directory / "curve.png", dpi=100)
    plt.close(fig)
    return [directory / n for n in ("curve.json", "curve.md", "curve.png")]

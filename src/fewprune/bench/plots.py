"""Plots of a sweep (PNG): accuracy vs MACs removed, accuracy vs samples, measured vs MAC speed-up."""

from __future__ import annotations

import statistics
from pathlib import Path

from .config import SweepConfig
from .report import summarise


def plot(config: SweepConfig, rows: list[dict], out_dir: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = summarise(rows)
    teachers = {r["model"]: r for r in rows if r.get("kind") == "teacher" and r.get("status") == "ok"}
    written = []
    for model in config.models:
        short = model.replace(":", "-").replace("/", "-")
        mid_samples = sorted(config.samples)[len(config.samples) // 2]
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        ax = axes[0]
        for m in config.methods:
            points = sorted(
                (statistics.fmean(r["macs_reduction"] for r in rs), statistics.fmean(100 * r["accuracy"] for r in rs))
                for (mm, _t, n, meth), rs in groups.items() if mm == model and meth == m and n == mid_samples)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=m)
        if model in teachers:
            ax.axhline(100 * teachers[model]["accuracy"], color="k", ls="--", lw=1, label="teacher")
        ax.set(xlabel="MACs removed", ylabel="test accuracy (%)", title=f"{model}, {mid_samples} samples")
        ax.legend(fontsize=7)
        ax = axes[1]
        for m in config.methods:
            for t in {tt for (mm, tt, _n, meth) in groups if mm == model and meth == m}:
                points = sorted((n, statistics.fmean(100 * r["accuracy"] for r in rs))
                                for (mm, tt, n, meth), rs in groups.items() if mm == model and meth == m and tt == t)
                ax.plot(*zip(*points, strict=True), marker="o", label=f"{m} ({t})")
        ax.set_xscale("log")
        ax.set(xlabel="samples", ylabel="test accuracy (%)", title="accuracy vs number of samples")
        ax.legend(fontsize=6)
        ax = axes[2]
        teacher = teachers.get(model)
        if teacher and "latency" in teacher:
            base = teacher["latency"]["batch64"]["median_ms"]
            xs, ys = [], []
            for (mm, _t, _n, _m), rs in groups.items():
                if mm == model:
                    for r in rs:
                        if "latency" in r:
                            xs.append(1 / (1 - r["macs_reduction"]))
                            ys.append(base / r["latency"]["batch64"]["median_ms"])
            ax.scatter(xs, ys, s=12)
            top = max(xs + ys + [1.5])
            ax.plot([1, top], [1, top], "k--", lw=1, label="speed-up = MAC speed-up")
            ax.plot([1, top], [1, 0.8 * top + 0.2], "r:", lw=1, label="0.8 × MAC speed-up")
            ax.legend(fontsize=7)
        ax.set(xlabel="MAC speed-up", ylabel="measured speed-up (batch 64, CPU)", title="latency vs MACs")
        fig.tight_layout()
        path = out_dir / f"{config.name}-{short}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written

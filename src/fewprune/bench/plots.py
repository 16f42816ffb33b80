"""Plots of a sweep (PNG): accuracy (or the sweep's metric) vs MACs removed, vs samples and vs measured speed-up;
measured vs MAC speed-up."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from ..files import atomic_path
from .config import METRICS, TRAINING_KINDS, SweepConfig
from .report import speedup, summarise, teachers_by_model
from .scratch import scratch_label


def _legend(ax, **options) -> None:
    """A legend when the axes have labelled series (an empty sweep has none, and matplotlib warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def plot(config: SweepConfig, rows: list[dict], out_dir: str | Path, methods: list[str] | None = None) -> list[Path]:
    """Accuracy vs MACs removed, accuracy vs samples, measured vs MAC speed-up and accuracy vs measured speed-up
    (so block dropping and filter pruning compare at equal latency): one PNG per model.

    ``methods`` are the series in order (default: the config's methods).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not config.methods:
        return plot_training_jobs(config, rows, out_dir)
    groups = summarise(rows)
    methods = methods or config.methods
    metric, ylabel = config.metric, f"test {METRICS[config.metric]['name']} (%)"
    teachers = teachers_by_model(rows)
    written = []
    for model in config.models:
        mid_samples = sorted(config.samples)[len(config.samples) // 2]
        teacher = teachers.get(model)
        speedups = [(1 / (1 - r["macs_reduction"]), measured) for (mm, *_), rs in groups.items() if mm == model
                    for r in rs if (measured := speedup(r, teacher)) is not None]
        # a sweep without timings (latency: false) gets no latency panels rather than two empty ones
        fig, axes = plt.subplots(1, 4 if speedups else 2, figsize=(21, 4.5) if speedups else (10.5, 4.5))
        ax = axes[0]
        for m in methods:
            points = sorted(
                (statistics.fmean(r["macs_reduction"] for r in rs), statistics.fmean(100 * r[metric] for r in rs))
                for (mm, _t, n, meth), rs in groups.items() if mm == model and meth == m and n == mid_samples)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=m)
        if model in teachers:
            ax.axhline(100 * teachers[model][metric], color="k", ls="--", lw=1, label="teacher")
        ax.set(xlabel="MACs removed", ylabel=ylabel, title=f"{model}, {mid_samples} samples")
        _legend(ax, fontsize=7)
        ax = axes[1]
        for m in methods:
            for t in sorted({tt for (mm, tt, _n, meth) in groups if mm == model and meth == m}):  # same order each run
                points = sorted((n, statistics.fmean(100 * r[metric] for r in rs))
                                for (mm, tt, n, meth), rs in groups.items() if mm == model and meth == m and tt == t)
                ax.plot(*zip(*points, strict=True), marker="o", label=f"{m} ({t})")
        ax.set_xscale("log")
        ax.set(xlabel="samples", ylabel=ylabel, title=f"{METRICS[metric]['name']} vs number of samples")
        _legend(ax, fontsize=6)
        if speedups:
            _plot_latency(axes[2:], speedups, groups, methods, teacher, model, mid_samples, metric)
        written.append(_save(fig, out_dir, config, model))
    return written


def _plot_latency(axes, speedups: list[tuple[float, float]], groups: dict, methods: list[str], teacher: dict | None,
                  model: str, mid_samples: int, metric: str = "accuracy") -> None:
    """The two latency panels: ``speedups`` ((MAC speed-up, measured speed-up) of each timed cell) against each
    other, and ``metric`` vs measured speed-up at ``mid_samples``."""
    ax = axes[0]
    xs, ys = zip(*speedups, strict=True)
    ax.scatter(xs, ys, s=12)
    top = max([*xs, *ys, 1.5])
    ax.plot([1, top], [1, top], "k--", lw=1, label="speed-up = MAC speed-up")
    ax.plot([1, top], [0.8, 0.8 * top], "r:", lw=1, label="0.8 × MAC speed-up")
    ax.legend(fontsize=7)
    ax.set(xlabel="MAC speed-up", ylabel="measured speed-up (batch 64, CPU)", title="latency vs MACs")
    ax = axes[1]
    for m in methods:
        points = accuracy_by_speedup(groups, teacher, model, m, mid_samples, metric)
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=m)
    if teacher:
        ax.axhline(100 * teacher[metric], color="k", ls="--", lw=1, label="teacher")
    name = METRICS[metric]["name"]
    ax.set(xlabel="measured speed-up (batch 64, CPU)", ylabel=f"test {name} (%)",
           title=f"{name} vs latency, {mid_samples} samples")
    _legend(ax, fontsize=7)


def plot_training_jobs(config: SweepConfig, rows: list[dict], out_dir: Path) -> list[Path]:
    """A sweep of full-data training jobs only (asca-scratch), one PNG per model: accuracy vs MACs removed and vs
    measured speed-up for each kind of job, and the fraction of each channel group every structure keeps."""
    import matplotlib.pyplot as plt

    teachers = teachers_by_model(rows)
    metric = config.metric
    written = []
    for model in config.models:
        jobs = [r for r in rows if r.get("kind") in TRAINING_KINDS and r.get("status") == "ok" and r["model"] == model]
        teacher = teachers.get(model)
        by_kind: dict[str, list[dict]] = {}
        for r in jobs:
            label = (f"{scratch_label(r.get('gates_schedule'))} (from scratch)" if r["kind"] == "scratch"
                     else f"{r.get('structure', 'l1')} + fine-tuning (ceiling)")
            by_kind.setdefault(label, []).append(r)
        fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
        for ax, x_of, xlabel in ((axes[0], lambda r: 100 * r["macs_reduction"], "MACs removed (%)"),
                                 (axes[1], lambda r, t=teacher: speedup(r, t), "measured speed-up (batch 64, CPU)")):
            for label, rs in by_kind.items():
                points = sorted((x_of(r), 100 * r[metric]) for r in rs if x_of(r) is not None)
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=label)
            if teacher:
                ax.axhline(100 * teacher[metric], color="k", ls="--", lw=1, label="teacher")
            ax.set(xlabel=xlabel, ylabel=f"test {METRICS[metric]['name']} (%)", title=f"{model}, full training set")
            _legend(ax, fontsize=7)
        ax = axes[2]
        sizes = next(({g: size for g, (size, _kept) in r["gates"].items()} for r in jobs if r.get("gates")), {})
        names = list(sizes)
        targets = sorted({_target_key(r) for r in jobs})  # one colour per target: dashed ceiling, solid scratch
        scratch_styles = iter(["-", ":", "-.", (0, (1, 4)), (0, (5, 1, 1, 1, 1, 1))])  # a scratch variant each
        for label, rs in by_kind.items():
            style = "--" if rs[0]["kind"] == "ceiling" else next(scratch_styles, "-")
            for r in sorted(rs, key=lambda r: r["macs_reduction"]):
                if r.get("plan_removed") is None or not names:
                    continue  # a structure not recorded (an older ceiling not re-timed yet)
                kept = [1 - r["plan_removed"].get(g, 0) / sizes[g] for g in names]
                ax.plot(range(len(names)), kept, marker=".", ls=style,
                        color=f"C{targets.index(_target_key(r)) % 10}",
                        label=f"{label}, {100 * r['macs_reduction']:.0f}% MACs")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
        ax.set(ylabel="fraction of channels kept", ylim=(0, 1.05), title="widths per channel group")
        _legend(ax, fontsize=6)
        written.append(_save(fig, out_dir, config, model))
    return written


def _save(fig, out_dir: Path, config: SweepConfig, model: str) -> Path:
    """The model's figure of the sweep as PNG, named after both."""
    return _write_figure(fig, out_dir / f"{config.name}-{figure_name(model, config.models)}.png")


def figure_name(model: str, models: list[str]) -> str:
    """A file-name-safe name for ``model`` among the sweep's ``models``: a model file's name without its folders
    (``nets/small.py:make`` → ``small.py-make``), or as many of its last folders as tell it from another model
    file of that name (``a/net.py:make`` and ``b/net.py:make`` → ``a-net.py-make``, ``b-net.py-make``)."""
    def tail(spec: str, parts: int) -> str:
        return "/".join(spec.strip("/").split("/")[-parts:])

    parts = 1
    while parts < model.count("/") + 1 and sum(tail(m, parts) == tail(model, parts) for m in models) > 1:
        parts += 1
    return re.sub(r"[/\\:]+", "-", tail(model, parts)).strip("-.")


def _write_figure(fig, path: str | Path) -> Path:
    """``fig`` laid out and written whole to ``path`` as PNG (shards finishing together may both write one), then
    closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _target_key(row: dict) -> str:
    return json.dumps(row["target"], sort_keys=True)


def accuracy_by_speedup(groups: dict, teacher: dict | None, model: str, method: str,
                        samples: int, metric: str = "accuracy") -> list[tuple[float, float]]:
    """(median measured speed-up, mean test ``metric`` in %) at each target of ``method`` with ``samples``,
    in order of speed-up; targets without timings are left out."""
    points = []
    for (mm, _target, n, meth), rows in groups.items():
        measured = [v for v in (speedup(r, teacher) for r in rows) if v is not None]
        if (mm, meth, n) == (model, method, samples) and measured:
            points.append((statistics.median(measured), statistics.fmean(100 * r[metric] for r in rows)))
    return sorted(points)


def plot_gate_learning(log: dict, path: str | Path) -> Path:
    """ASCA's gate learning as one PNG: budget and task loss, binarisation, per-layer widths before → after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    it = log["iterations"]
    ax = axes[0]
    ax.plot(it, log["remaining"], label=f"{log['kind']} kept (soft gates)")
    ax.axhline(log["target_remaining"], color="k", ls="--", lw=1, label="target")
    ax.set(xlabel="iteration", ylabel="fraction kept", title="budget", ylim=(0, 1.02))
    twin = ax.twinx()
    twin.plot(it, log["task"], color="tab:red", alpha=0.6, label="task loss")
    twin.set_ylabel("complexity-weighted task loss")
    ax.legend(loc="upper right", fontsize=7)
    ax = axes[1]
    ax.plot(it, log["undecided"], label="gates in (0.05, 0.95)")
    ax.plot(it, log["open"], label="gates open (> 0.5)")
    ax.plot(it, [4 * b for b in log["binarisation"]], label="4 · mean g(1 − g)")
    ax.set(xlabel="iteration", ylabel="fraction", title="binarisation", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)
    ax = axes[2]
    names = list(log["widths"])
    before = [log["widths"][n][0] for n in names]
    after = [log["widths"][n][1] for n in names]
    ax.bar(range(len(names)), before, color="lightgray", label="teacher")
    ax.bar(range(len(names)), after, color="tab:blue", label="gates open at the end")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set(ylabel="width", title="per-layer widths")
    ax.legend(fontsize=7)
    return _write_figure(fig, path)


def plot_result(plan, recovery: dict | None, path: str | Path) -> Path:
    """A compression result as one PNG: the fraction of every channel group's width the student keeps (dropped
    blocks named), and each training recovery's loss over its iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {step: stats for step, stats in (recovery or {}).items()
              if isinstance(stats, dict) and stats.get("loss_curve")}
    fig, axes = plt.subplots(1, 2 if curves else 1, figsize=(15 if curves else 10, 4.5), squeeze=False)
    ax = axes[0][0]
    # names in natural order (layer2 before layer10): close to the model's own order for the usual naming
    names = sorted(plan.sizes, key=lambda g: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", g)])
    kept = [1 - len(plan.removed.get(g, [])) / plan.sizes[g] for g in names]  # widths differ 100-fold: fractions
    ax.bar(range(len(names)), [1.0] * len(names), color="lightgray", label="teacher")
    ax.bar(range(len(names)), kept, color="tab:blue", label="student")
    labels = [f"{g} ({plan.sizes[g]})" for g in names]
    ax.set_xticks(range(len(names)), labels, rotation=90, fontsize=max(3, min(7, 400 // max(1, len(names)))))
    dropped = f"; blocks dropped: {', '.join(plan.dropped_blocks)}" if plan.dropped_blocks else ""
    ax.set(ylabel="fraction kept", ylim=(0, 1.05), title=f"widths per channel group (the teacher's){dropped}")
    ax.title.set_fontsize(8 if dropped else 10)
    ax.legend(fontsize=7)
    if curves:
        ax = axes[0][1]
        for step, stats in curves.items():
            every = max(1, stats["iterations"] // 50)  # the curve keeps every (iterations // 50)-th loss
            ax.plot([i * every for i in range(len(stats["loss_curve"]))], stats["loss_curve"], label=step)
        ax.set(xlabel="iteration", ylabel="training loss", title="recovery", yscale="log")
        ax.legend(fontsize=7)
    return _write_figure(fig, path)

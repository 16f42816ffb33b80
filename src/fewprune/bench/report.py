"""Markdown tables of a sweep: mean ± std over seeds, reference rows, gaps, ranks."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from ..allocation import Target
from ..metrics import threads_text
from .config import JOB_KINDS, METRICS, TRAINING_KINDS, Cell, SweepConfig
from .runner import HELD_OUT
from .scratch import scratch_label


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _target_label(target: dict) -> str:
    return Target.from_dict(target).describe()


def summarise(rows: list[dict], status: str = "ok") -> dict:
    """Group cells of ``status`` by (model, target, samples, method): accuracy, reductions, speed-ups over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("kind") == "cell" and r.get("status") == status:
            c = r["cell"]
            groups[(c["model"], _target_label(c["target"]), c["samples"], c["method"])].append(r)
    return groups


def teachers_by_model(rows: list[dict]) -> dict[str, dict]:
    """Each model's teacher row among ``rows`` (measured ones only)."""
    return {r["model"]: r for r in rows if r.get("kind") == "teacher" and r.get("status") == "ok"}


def render(config: SweepConfig, rows: list[dict], methods: list[str] | None = None) -> str:
    """The report's markdown; ``methods`` are the row labels in order (default: the config's methods)."""
    methods = methods or config.methods
    metric = config.metric
    teachers = teachers_by_model(rows)
    groups, failed = summarise(rows), summarise(rows, "error")
    errors = [r for r in rows if r.get("kind") == "cell" and r.get("status") == "error"]
    trained = [r for r in rows if r.get("kind") in TRAINING_KINDS]
    trained_ok = [r for r in trained if r.get("status") == "ok"]
    trained_errors = [r for r in trained if r.get("status") == "error"]
    n_ok = sum(len(v) for v in groups.values())
    lines = _heading(config, n_ok, len(errors), trained_ok, trained_errors)
    for model in config.models:
        teacher = teachers.get(model)
        lines += [f"## {model}", ""]
        if not config.methods:
            lines += _training_jobs(trained_ok, model, teacher, metric) + [""]
            continue
        settings = [(t, n) for t in map(_target_label, config.targets) for n in config.samples]
        lines += _score_table(config, rows, model, methods, settings, groups, failed, teacher)
        lines += _curve_areas(config, rows, model, methods, teacher)
        at_target = [e for e in config.compare or [] if e.get("at", "target") == "target"]
        at_speedup = [e for e in config.compare or [] if e.get("at") == "speed-up"]
        lines += _paired_differences(at_target, groups, model, settings, metric)
        lines += _speedup_differences(at_speedup, groups, model, config, teacher, metric)
        lines += _cost_table(config, model, methods, groups, teacher)
        if any(r["model"] == model for r in trained_ok):
            lines += [""] + _training_jobs(trained_ok, model, teacher, metric)
        lines.append("")
    if errors or trained_errors:
        lines += [f"## Failed {'jobs' if trained_errors else 'cells'}", ""] \
            + [f"- `{r['command']}`: {r['error']}" for r in errors] \
            + [f"- `{r['key']}`: {r['error']}" for r in trained_errors] + [""]
    ok_cells = [r for g in groups.values() for r in g]
    lines += _quiet_timing_note(config, ok_cells, trained_ok)
    lines += _merged_note(config, ok_cells + trained_ok)
    lines.append(_environment_line(rows, "Cells" if config.methods else "Jobs"))
    return "\n".join(lines) + "\n"


def _heading(config: SweepConfig, n_ok: int, n_errors: int, trained_ok: list[dict],
             trained_errors: list[dict]) -> list[str]:
    """Title, what the sweep covers and how much of it is measured, how to regenerate it, its variants."""
    test_split = 'the full test split' if config.eval_limit is None else f'{config.eval_limit} test images'
    folder = config.dataset.removeprefix("imagefolder:")
    if folder != config.dataset and not (Path(folder) / "test").is_dir():
        test_split = (f"{test_split.replace('test split', 'held-out part')} (the folder has no test/ split: a fixed "
                      f"{HELD_OUT:.0%} of its images, the same for every job, the samples drawn from the rest)")
    from .sweep import sweep_jobs

    n_training = sum(not isinstance(job, Cell) for job in sweep_jobs(config))
    jobs = (f"{n_training} full-data training job{'s' if n_training != 1 else ''} ({len(trained_ok)} measured, "
            f"{len(trained_errors)} failed)"
            if n_training else "")
    if config.methods:
        summary = (f"{len(config.cells())} cells ({n_ok} measured, {n_errors} failed)"
                   + (f" and {jobs}" if jobs else "") + f"; dataset {config.dataset}, "
                   f"{'per class' if config.per_class else 'total'} sample counts {config.samples}, seeds "
                   f"{config.seeds}, labels {'used' if config.labels else 'hidden'}")
    else:  # a sweep of training jobs only (asca-scratch)
        summary = f"{jobs or 'no job'}; dataset {config.dataset}"
    lines = [f"# {config.name}", "",
             f"Sweep `{config.source}`: {summary}; {METRICS[config.metric]['name']} on {test_split}.", "",
             f"Regenerate: `fewprune bench {config.source}`", ""]
    if config.variants:
        from .config import normal_variant, variant_arguments

        lines += ["Variants (methods with changed settings, as `prune --method …` arguments):", ""]
        lines += [f"- `{name}`: `{variant_arguments(normal_variant(v))}`" for name, v in config.variants.items()] + [""]
    return lines


def _score_table(config: SweepConfig, rows: list[dict], model: str, methods: list[str], settings: list[tuple],
                 groups: dict, failed: dict, teacher: dict | None) -> list[str]:
    """The model's main table: one column per (target, samples), the reference rows (teacher, full-data ceiling,
    asca-scratch), then each method's mean ± std, gap to the teacher and rank per column, and its mean rank."""
    metric = config.metric
    lines = [f"{METRICS[metric]['title']} (%), mean ± std over seeds; (gap to teacher); rank per column.", ""]
    header = "| method | " + " | ".join(f"{t}, {n} samples" for t, n in settings) + " | mean rank |"
    lines += [header, "|" + " --- |" * (len(settings) + 2)]
    lines += _reference_rows(rows, model, settings, teacher, metric)
    means = {(m, s): _mean_std([100 * r[metric] for r in groups[(model, *s, m)]])
             for m in methods for s in settings if groups.get((model, *s, m))}
    rank_of = {(m, s): _rank(means[(m, s)][0], [means[(mm, s)][0] for mm in methods if (mm, s) in means])
               for m, s in means}
    ranks: dict[str, list[int]] = defaultdict(list)
    for (m, _s), rank in rank_of.items():
        ranks[m].append(rank)
    for m in methods:
        cells = []
        for s in settings:
            fails = len(failed.get((model, *s, m), ()))
            if (m, s) not in means:
                cells.append(f"failed [{fails} of {len(config.seeds)} seeds, see below]" if fails else "–")
                continue
            mean, std = means[(m, s)]
            gap = f" ({mean - 100 * teacher[metric]:+.2f})" if teacher else ""
            n = len(groups[(model, *s, m)])
            spread = f" ± {std:.2f}" if n > 1 else ""
            seeds = f" [{n} of {len(config.seeds)} seeds" + (f", {fails} failed]" if fails else "]") \
                if n < len(config.seeds) else ""
            cells.append(f"{mean:.2f}{spread}{gap} #{rank_of[(m, s)]}{seeds}")
        mean_rank = f"{statistics.fmean(ranks[m]):.1f}" if ranks[m] else "–"
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {mean_rank} |")
    return lines


def _reference_rows(rows: list[dict], model: str, settings: list[tuple], teacher: dict | None,
                    metric: str) -> list[str]:
    """The score table's rows that no method fills: the teacher, the full-data ceilings of the same structures and
    ASCA learned from scratch, where measured."""
    lines = []
    if teacher:
        lines.append("| *teacher* | " + " | ".join(f"{100 * teacher[metric]:.2f}" for _ in settings) + " | |")
    ceilings = {(r["model"], _target_label(r["target"])): r for r in rows
                if r.get("kind") == "ceiling" and r.get("status") == "ok"}
    ceiling_cells = []
    for t, _n in settings:
        c = ceilings.get((model, t))
        ceiling_cells.append(f"{100 * c[metric]:.2f}" if c else "–")
    if any(c != "–" for c in ceiling_cells):
        epochs = next(r["epochs"] for r in ceilings.values())
        picks = sorted({f"{c['structure']} on {c['structure_samples']} images" for (m, _t), c in ceilings.items()
                        if m == model and "structure_samples" in c})
        picked = f"; blocks picked by {', '.join(picks)}" if picks else ""
        lines.append(f"| *full-data ceiling* ({epochs} ep.{picked}) | " + " | ".join(ceiling_cells) + " | |")
    scratch = {_target_label(r["target"]): r for r in rows
               if r.get("kind") == "scratch" and r.get("status") == "ok" and r["model"] == model
               and not r.get("gates_schedule")}  # the grid shows the default form; the table every variant
    if scratch:
        epochs = next(iter(scratch.values()))["epochs"]
        lines.append(f"| *asca-scratch* ({epochs} ep., full data, no teacher) | "
                     + " | ".join(f"{100 * scratch[t][metric]:.2f}" if t in scratch else "–"
                                  for t, _n in settings) + " | |")
    return lines


def _cost_table(config: SweepConfig, model: str, methods: list[str], groups: dict, teacher: dict | None) -> list[str]:
    """Per method and target: MACs and params removed, MAC vs measured speed-up, compression time (means)."""
    shared = any(r.get("shared_path_seconds") for (mm, *_), rs in groups.items() if mm == model for r in rs)
    lines = ["", "MACs removed, measured CPU speed-up at batch 64 vs MAC speed-up, compression time (mean over cells"
             + ("; a cell that resumed a step-wise walk shared with a smaller target counts that walk too"
                if shared else "") + "):",
             "", "| method | target | MACs removed | params removed | MAC speed-up | measured speed-up "
             "| compress time |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for m in methods:
        for t in map(_target_label, config.targets):
            cells = [r for (mm, tt, _n, meth), rs in groups.items() if mm == model and tt == t and meth == m for r in rs]
            if not cells:
                continue
            mac = statistics.fmean(r["macs_reduction"] for r in cells)
            par = statistics.fmean(r["params_reduction"] for r in cells)
            lines.append(f"| {m} | {t} | {100 * mac:.1f}% | {100 * par:.1f}% | {1 / (1 - mac):.2f}× | "
                         f"{_speedups(cells, teacher)} | "
                         f"{statistics.fmean(standalone_seconds(r) for r in cells):.1f} s |")
    return lines


def _quiet_timing_note(config: SweepConfig, ok_cells: list[dict], trained_ok: list[dict]) -> list[str]:
    """Which speed-ups come from a quiet re-timing (``--remeasure-latency``), and how it timed them."""
    quiet = [r for r in ok_cells + trained_ok if r.get("latency_remeasured")]
    if not quiet:
        return []
    threads = ", ".join(map(str, sorted({r.get("latency_threads") for r in quiet} - {None}))) or "?"
    what = "cells" if not trained_ok else "jobs" if ok_cells else "training jobs"
    return [f"Speed-ups of {len(quiet)} of {len(ok_cells) + len(trained_ok)} {what} come from a quiet re-measurement "
            f"(`fewprune bench {config.source} --remeasure-latency`) on {threads_text(threads)}: each "
            "structure timed back to back with its teacher"
            + (" in five rounds, the round with the median teacher/student ratio reported"
               if all(r.get("latency_protocol") == 2 for r in quiet) else "")
            + ", nothing else running"
            + (" (cells of the alongside sweep by that sweep's command)." if config.alongside else "."), ""]


def _merged_note(config: SweepConfig, ok_jobs: list[dict]) -> list[str]:
    """Which jobs were merged in from another machine (``--merge``) and how many of them were timed here."""
    merged = [r for r in ok_jobs if r.get("merged_from")]
    if not merged:
        return []
    files = ", ".join(f"`{name}`" for name in sorted({r["merged_from"] for r in merged}))
    timed = sum(bool(r.get("latency_remeasured")) for r in merged)
    one = len(merged) == 1
    return [f"{len(merged)} job{'' if one else 's'} ran on another machine and {'was' if one else 'were'} "
            f"merged in (`fewprune bench {config.source} "
            f"--merge`, from {files}): {'its speed-up comes' if one else 'their speed-ups come'} only from "
            f"timing {'it' if one else 'them'} here (`--remeasure-latency`), and {timed} of {len(merged)} "
            f"{'has' if timed == 1 else 'have'} been.", ""]


def _environment_line(rows: list[dict], ran: str) -> str:
    """The CPU threads and library versions the jobs ran with; where jobs differ (run in several sessions, or
    merged from another machine), how many ran with each."""
    jobs = [r for r in rows if r.get("kind") in JOB_KINDS and "versions" in r]
    if not jobs:
        return f"{ran}: no versions recorded."
    n = len(jobs)
    where = Counter(r.get("device") or threads_text(r.get("threads", "?"), "CPU thread") for r in jobs)
    on = " or ".join(w + (f" ({c} of {n})" if len(where) > 1 else "") for w, c in where.most_common())
    same, differing = [], []
    for name in sorted({k for r in jobs for k in r["versions"]}):
        values = Counter(r["versions"].get(name) for r in jobs)
        if len(values) == 1 and None not in values:
            same.append(f"{name} {next(iter(values))}")
        else:
            differing.append(f"{name} " + ", ".join(f"{v} in {c} of {n}" for v, c in values.most_common() if v))
    return f"{ran} ran on {on} with {', '.join(same)}" + "".join(f"; {d}" for d in differing) + "."


def _curve_areas(config: SweepConfig, rows: list[dict], model: str, methods: list[str],
                 teacher: dict | None) -> list[str]:
    """For a sweep over channel fractions only: each method's area under the metric vs fraction removed.

    Per seed, the teacher's accuracy at 0% and the method's at every swept
    fraction make one curve (trapezoids, divided by the range: a mean
    accuracy); seeds missing a fraction are left out.
    """
    from .curve import area

    if not teacher or len(config.targets) < 2 or any(set(t) != {"channels"} for t in config.targets):
        return []
    metric = config.metric
    fractions = sorted(t["channels"] for t in config.targets)
    scores: dict[tuple, dict[float, float]] = defaultdict(dict)
    for r in rows:
        if r.get("kind") == "cell" and r.get("status") == "ok" and r["cell"]["model"] == model:
            c = r["cell"]
            scores[(c["method"], c["samples"], c["seed"])][c["target"]["channels"]] = 100 * r[metric]
    name = METRICS[metric]["name"]
    lines = ["", f"Area under {name} vs channels removed (0–{100 * fractions[-1]:g}%, the teacher at 0%, points at "
                 f"{', '.join(f'{100 * f:g}%' for f in fractions)}): mean {name} over the range, "
                 "mean ± std over seeds.", "",
             "| method | " + " | ".join(f"AUC, {n} samples" for n in config.samples) + " |",
             "|" + " --- |" * (len(config.samples) + 1)]
    for m in methods:
        cells = []
        for n in config.samples:
            areas = [area([(0.0, 100 * teacher[metric]), *points.items()])
                     for (mm, nn, _seed), points in scores.items()
                     if mm == m and nn == n and set(points) == set(fractions)]
            mean, std = _mean_std(areas) if areas else (None, None)
            cells.append("–" if mean is None else f"{mean:.2f}" + (f" ± {std:.2f}" if len(areas) > 1 else "")
                         + (f" [{len(areas)} of {len(config.seeds)} seeds]" if len(areas) < len(config.seeds) else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _paired_differences(comparisons: list[dict], groups: dict, model: str,
                        settings: list[tuple[str, int]], metric: str = "accuracy") -> list[str]:
    """Per ``compare`` entry and setting: first − second in points of ``metric``, paired by seed.

    A seed fixes the few samples, so a pair shares its images: the spread of
    the differences is what separates two methods, not the spread of each.
    """
    if not comparisons:
        return []
    lines = ["", "Paired differences (points): first − second, mean ± std over the seeds both ran (a seed fixes the "
                 "few samples, so each pair saw the same images); [ahead: seeds where the first is higher].", "",
             "| comparison | " + " | ".join(f"{t}, {n} samples" for t, n in settings) + " |",
             "|" + " --- |" * (len(settings) + 1)]
    notes = []
    for entry in comparisons:
        first, second = entry["methods"]
        cells = []
        for setting in settings:
            by_seed = [{r["cell"]["seed"]: 100 * r[metric] for r in groups.get((model, *setting, m), ())}
                       for m in (first, second)]
            seeds = sorted(by_seed[0].keys() & by_seed[1].keys())
            if not seeds:
                cells.append("–")
                continue
            differences = [by_seed[0][s] - by_seed[1][s] for s in seeds]
            mean, std = _mean_std(differences)
            spread = f" ± {std:.2f}" if len(seeds) > 1 else ""
            ahead = sum(d > 0 for d in differences)
            cells.append(f"{mean:+.2f}{spread} [ahead {ahead} of {len(seeds)}]")
        lines.append(f"| {first} − {second} | " + " | ".join(cells) + " |")
        if entry.get("note"):
            notes.append(f"- {first} − {second}: {entry['note']}")
    return lines + ([""] + notes if notes else [])


def _interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """The value at ``x`` on the line through the two ``(x, value)`` points on either side of it (None: ``x``
    lies outside them all)."""
    points = sorted(points)
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def _speedup_differences(comparisons: list[dict], groups: dict, model: str, config: SweepConfig,
                         teacher: dict | None, metric: str = "accuracy") -> list[str]:
    """Per ``compare`` entry with ``at: speed-up``, per target of the first method and sample count: first − second
    at the speed-up each of the first's cells measured, paired by seed.

    The second method's value there is interpolated linearly between its two structures of the same seed and
    sample count whose measured speed-ups lie on either side (the teacher, unpruned, counts as 1.00× with its
    own accuracy): block dropping against filter pruning at equal latency, when the two never share a target.
    A cell measured faster (or slower) than every structure of the second method is left out and counted.
    """
    if not comparisons or teacher is None:
        return []
    reference = (1.0, 100 * teacher[metric])
    lines = ["", "At equal measured speed-up (batch 64): first − second, the second's accuracy interpolated linearly "
                 "at each of the first's cells' measured speed-up between the second's two structures of the same "
                 "seed on either side of it (the teacher counts as 1.00×); mean ± std over seeds, the first's mean "
                 "speed-up, [ahead: seeds where the first is higher; outside: cells beyond the second's measured "
                 "range].", "", "| comparison | first's target | " + " | ".join(f"{n} samples" for n in config.samples)
             + " |", "|" + " --- |" * (len(config.samples) + 2)]
    notes = []
    for entry in comparisons:
        first, second = entry["methods"]
        # the second's timed structures per (sample count, seed), each curve starting at the teacher
        curves: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(lambda: [reference])
        for (m, _t, samples, method), rows in groups.items():
            if m == model and method == second:
                for r in rows:
                    if (speed := speedup(r, teacher)) is not None:
                        curves[(samples, r["cell"]["seed"])].append((speed, 100 * r[metric]))
        for target in map(_target_label, config.targets):
            if not any(groups.get((model, target, n, first)) for n in config.samples):
                continue
            cells = []
            for n in config.samples:
                speeds, differences, outside = [], [], 0
                for r in groups.get((model, target, n, first), ()):
                    speed, curve = speedup(r, teacher), (n, r["cell"]["seed"])
                    if speed is None or curve not in curves:  # not timed, or a seed the second has not run
                        continue
                    other = _interpolate(curves[curve], speed)
                    if other is None:
                        outside += 1
                        continue
                    speeds.append(speed)
                    differences.append(100 * r[metric] - other)
                beyond = f"; outside {outside}" if outside else ""
                if not differences:
                    cells.append(f"– [outside {outside}]" if outside else "–")
                    continue
                mean, std = _mean_std(differences)
                spread = f" ± {std:.2f}" if len(differences) > 1 else ""
                ahead = sum(d > 0 for d in differences)
                cells.append(f"{mean:+.2f}{spread} at {statistics.fmean(speeds):.2f}× "
                             f"[ahead {ahead} of {len(differences)}{beyond}]")
            lines.append(f"| {first} − {second} | {target} | " + " | ".join(cells) + " |")
        if entry.get("note"):
            notes.append(f"- {first} − {second} (at equal speed-up): {entry['note']}")
    return lines + ([""] + notes if notes else [])


def _training_jobs(rows: list[dict], model: str, teacher: dict | None, metric: str = "accuracy") -> list[str]:
    """The model's full-data training jobs as a table: ``metric``, reductions, measured speed-up, training time."""
    mine = sorted((r for r in rows if r["model"] == model),
                  key=lambda r: (r["kind"], Target.from_dict(r["target"]).value, r["key"]))
    if not mine:
        return ["No full-data training job measured yet."]
    lines = ["Full-data training (the whole training split, labels used): *ceiling* = the teacher pruned to the "
             "structure named, then fine-tuned; *asca-scratch* = gates and weights learned together from random "
             "initialisation, the closed channels removed, no fine-tuning. Measured speed-up at batch 64; training "
             "time on the threads shown.", "",
             f"| job | target | {METRICS[metric]['column']} (%) | MACs removed | params removed | MAC speed-up "
             "| measured speed-up | training time |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    if teacher:
        lines.append(f"| *teacher* | – | {100 * teacher[metric]:.2f} | – | – | 1.00× | 1.00× | – |")
    for r in mine:
        if r["kind"] == "ceiling":
            picked = (f"{r['structure']} blocks (on {r['structure_samples']} images)" if "structure_samples" in r
                      else f"{r.get('structure', 'l1')} structure")
            job = f"ceiling: {picked}, fine-tuned {r['epochs']} ep."
        else:
            job = f"{scratch_label(r.get('gates_schedule'))}, {r['epochs']} ep. from scratch"
        gap = f" ({100 * (r[metric] - teacher[metric]):+.2f})" if teacher else ""
        params = params_reduction(r, teacher)
        measured = speedup(r, teacher)
        minutes = r.get("train_seconds", 0) / 60
        lines.append(f"| {job} | {_target_label(r['target'])} | {100 * r[metric]:.2f}{gap} "
                     f"| {100 * r['macs_reduction']:.1f}% | " + ("–" if params is None else f"{100 * params:.1f}%")
                     + f" | {1 / (1 - r['macs_reduction']):.2f}× | "
                     + ("–" if measured is None else f"{measured:.2f}×")
                     + f" | {minutes:.0f} min ({threads_text(r.get('threads', '?'))}) |")
    return lines


def params_reduction(row: dict, teacher: dict | None) -> float | None:
    """The fraction of the teacher's parameters a job removed: recorded, or from its count and the teacher's
    (full-data ceilings record the count only); None when neither tells."""
    if row.get("params_reduction") is not None:
        return row["params_reduction"]
    return 1 - row["params"] / teacher["params"] if teacher and row.get("params") and teacher.get("params") else None


def speedup(row: dict, teacher: dict | None, batch: int = 64) -> float | None:
    """Measured speed-up of a cell's student over its teacher, from the quiet re-measurement when there is one."""
    key = f"batch{batch}"
    base = (row.get("latency_teacher") or (teacher or {}).get("latency") or {}).get(key)
    timed = (row.get("latency") or {}).get(key)  # a sweep without latency leaves none
    if base is None or timed is None:
        return None
    return base["median_ms"] / timed["median_ms"]


def _rank(mean: float, means: list[float]) -> int:
    """1 + how many means are higher, as the table shows them (2 decimals): equal figures share a rank."""
    return 1 + sum(round(other, 2) > round(mean, 2) for other in means)


def standalone_seconds(row: dict) -> float:
    """A cell's compression time as a call of its own: with the shared part of a step-wise walk added back."""
    return row["compress_seconds"] + row.get("shared_path_seconds", 0.0)


def _speedups(cells: list[dict], teacher: dict | None) -> str:
    values = [speedup(r, teacher) for r in cells]
    if any(v is None for v in values):
        return "–"
    return f"{statistics.fmean(values):.2f}×"

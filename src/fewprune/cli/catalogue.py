"""``fewprune methods`` and ``fewprune zoo``: what is registered and what is shipped."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from .. import metrics
from ..files import check_writable, write_text_atomic
from ..models import zoo
from ..recovery import SCHEDULE_FLAGS
from .outputs import rich_console


def _method_options(method: str, as_json: bool) -> int:
    """``fewprune methods NAME``: the method's recipe and every option ``--option PART.NAME=VALUE`` can set."""
    from rich.markup import escape
    from rich.table import Table

    from ..methods import get, part_options

    recipe, parts = get(method), part_options(method)
    if as_json:
        print(json.dumps({"method": method, "recipe": recipe.to_dict(),
                          "options": {part: d["options"] for part, d in parts.items()}}, indent=2, default=str))
        return 0
    table = Table(title=escape(f"{method} = {recipe.criterion}@{recipe.allocation}+{recipe.recovery}"
                               + (f"+{recipe.augment}" if recipe.augment else "") + ": --option PART.NAME=VALUE"))
    for column in ("option", "value (the method's, else the default)", "part"):
        table.add_column(column, overflow="fold")
    for part, described in parts.items():
        for name, value in described["options"].items():
            table.add_row(escape(f"{part}.{name}"), escape(repr(value)), escape(described["label"]))
    rich_console().print(table)
    print(f"the training schedule: {', '.join(SCHEDULE_FLAGS.values())}")
    return 0


def cmd_methods(args) -> int:
    """``fewprune methods``: the registered methods and parts as tables (or JSON); with a name, its options."""
    from rich.table import Table

    from ..methods import catalogue

    if args.method:
        return _method_options(args.method, args.json)
    rows = catalogue()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.markup import escape

    table = Table(title=escape("registered methods (compose others as criterion[@allocation][+recovery…][+augmentation])"))
    for col in ("method", "level", "recipe", "labels", "what it does"):
        table.add_column(col, overflow="fold")
    for m in rows["methods"]:
        table.add_row(escape(m["name"]), m["granularity"], escape(m["recipe"]),
                      "read" if m["reads_labels"] else "not read", escape(m["description"]))
    console = rich_console()
    console.print(table)
    for kind in ("criteria", "allocations", "recoveries", "augmentations"):
        parts = Table(title=kind)
        parts.add_column("name")
        if kind == "criteria":
            parts.add_column("level")
        parts.add_column("what it does")
        for part in rows[kind]:
            parts.add_row(escape(part["name"]), *([part["granularity"]] if kind == "criteria" else []),
                          escape(part["description"]))
        console.print(parts)
    return 0


ZOO_LATENCY_ROUNDS = 5


def cmd_zoo(args) -> int:
    """``fewprune zoo``: the shipped teachers (``list``), or a markdown page with their latency measured anew
    (``report``)."""
    from rich.table import Table

    names = zoo.list()
    if args.action == "list":
        table = Table(title="fewprune zoo")
        for col in ("teacher", "architecture", "dataset", "input", "test accuracy", "MACs", "params", "trained"):
            table.add_column(col)
        for name in names:
            m = zoo.manifest(name)
            channels, size = m["in_channels"], m["image_size"]  # an image folder is read so (zoo.input_convention)
            table.add_row(name, m["architecture"], m["dataset"], f"{channels}×{size}×{size}",
                          f"{100 * m['test_accuracy']:.2f}%",
                          f"{m['macs'] / 1e6:.1f} M", f"{m['params'] / 1e6:.3f} M", f"{m['train_seconds'] / 60:.0f} min")
        rich_console().print(table)
        return 0
    # report: a markdown page with freshly measured latency
    if args.out:
        check_writable(args.out)
    lines = [
        "# Zoo: the shipped teachers",
        "",
        "Accuracy is on the full test split and was recorded when each teacher finished training (for a "
        "segmentation teacher: pixel accuracy, and the mean IoU its target is set in); MACs, params and latency are "
        "measured anew by the command below.",
        "",
        "Regenerate: `fewprune zoo report --out benchmarks/ZOO.md`",
        "",
        "| teacher | test accuracy | target | MACs | params | latency b1 (ms) | latency b64 (ms) | train time "
        "| trained by |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    from ..models.recipes import ACCURACY_TARGETS

    def against_target(name: str, manifest: dict) -> str:
        target = ACCURACY_TARGETS.get(name)
        if target is None:
            return "–"
        reached = manifest.get("mean_iou", manifest["test_accuracy"])
        met = "met" if reached >= target else f"**{100 * (target - reached):.2f} short**"
        return f"{100 * target:.1f}%{' mean IoU' if 'mean_iou' in manifest else ''} ({met})"

    def accuracy(manifest: dict) -> str:
        iou = manifest.get("mean_iou")
        return f"{100 * manifest['test_accuracy']:.2f}%" + ("" if iou is None else f" (pixels; mean IoU {100 * iou:.2f}%)")

    manifests = {name: zoo.manifest(name) for name in names}
    teachers = {name: zoo.load(name) for name in names}
    inputs = {name: torch.zeros(1, m["in_channels"], m["image_size"], m["image_size"]) for name, m in manifests.items()}
    # A shared VM's speed drifts for seconds at a time (the same batch-1 forward timed 3 ms in one run, 6 in the
    # next): every teacher is timed in each of several rounds, and the median round is reported with the range.
    timed: dict[str, dict[int, list[float]]] = {name: {1: [], 64: []} for name in names}
    for _ in range(ZOO_LATENCY_ROUNDS):
        for name in names:
            for batch in (1, 64):
                x = inputs[name].expand(batch, -1, -1, -1).contiguous()
                timed[name][batch].append(metrics.latency(teachers[name], x, min_seconds=0.3)["median_ms"])

    def rounds(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"

    for name in names:
        m, model, x = manifests[name], teachers[name], inputs[name]
        lines.append(
            f"| {name} | {accuracy(m)} | {against_target(name, m)} | "
            f"{metrics.macs(model, x) / 1e6:.2f} M | "
            f"{metrics.params(model) / 1e6:.3f} M | {rounds(timed[name][1])} | {rounds(timed[name][64])} | "
            f"{m['train_seconds'] / 60:.0f} min | `{m['command']}` (seed {m['seed']}) |"
        )
    v = metrics.versions()
    lines += ["", f"Latency: the median of {ZOO_LATENCY_ROUNDS} rounds, each timing every teacher in turn (a round's "
              "figure is the median forward over at least 0.3 s); in brackets, the rounds' range. Measured with "
              f"{metrics.threads_text(torch.get_num_threads())}; versions: "
              + ", ".join(f"{k} {val}" for k, val in v.items()) + "."]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(Path(args.out), text)
    print(text)
    return 0

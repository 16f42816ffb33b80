"""``fewprune eval`` (one model measured) and ``fewprune compare`` (saved results side by side)."""

from __future__ import annotations

from pathlib import Path

from .. import metrics
from ..devices import resolve_device
from ..files import check_writable, write_text_atomic
from ..models.outputs import check_samples
from .inputs import fixed_subset, load_model_for, read_dataset, without_result_samples
from .outputs import metrics_table, onnxruntime_latency, rich_console, write_json_atomic


def cmd_eval(args) -> int:
    """``fewprune eval``: one model's accuracy, MACs, params and latency on a dataset split."""
    device = resolve_device(args.device)  # a GPU that is not there is named before the data is read
    if args.json:
        check_writable(args.json, "--json")
    dataset, split = without_result_samples(args, read_dataset(args, args.split))
    dataset = fixed_subset(dataset, args.limit)
    model = load_model_for(args.model, dataset.info, args.weights, args.allow_pickle, args.adapt).to(device)
    item = dataset[0]  # (image, label), or an image alone from a folder of unlabelled images
    example = (item[0] if isinstance(item, tuple | list) else item).unsqueeze(0)
    check_samples(model, example.to(device), who=args.model, what=f"{args.data}'s images")
    result = metrics.measure(model, dataset, example, progress=not args.quiet)
    if args.onnx:
        result["onnxruntime"] = onnxruntime_latency(model, example)
    result.update(model=args.model, data=args.data, split=split, versions=metrics.versions())
    rich_console().print(metrics_table({args.model: result}, title=f"{args.model} on {args.data} ({split})",
                                   split=split))
    if args.json:
        write_json_atomic(Path(args.json), result)
    return 0


def cmd_compare(args) -> int:
    """Saved results side by side, as each recorded its figures (nothing is measured again)."""
    from rich.table import Table

    from .. import results

    if args.out:
        check_writable(args.out)
    summaries = [results.summary(r) for r in args.results]
    table = Table(title="results side by side (as each recorded them)")
    for column in results.COLUMNS:
        table.add_column(column, justify="left" if column in ("result", "method", "target", "score") else "right")
    for s in summaries:
        table.add_row(*results.row_cells(s))
    rich_console().print(table)
    for note in results.caveats(summaries):
        print(f"note: {note}")
    if args.out:
        write_text_atomic(Path(args.out), results.markdown(summaries, "fewprune " + " ".join(args.argv)))
        print(f"written to {args.out}")
    return 0

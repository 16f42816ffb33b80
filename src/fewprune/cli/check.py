"""``fewprune check``: models and methods pruned, checked against the masked teacher and reloaded."""

from __future__ import annotations

from pathlib import Path

from ..files import check_writable, write_text_atomic
from .arguments import input_shape


def _check_methods(args) -> int:
    """Every method on every model family (or those named): runs, is refused with a reason, or fails."""
    from ..bench import read_results
    from ..bench.method_coverage import MODELS, check_methods, latest_pairs, method_coverage_markdown, method_names

    results = Path(args.results or "benchmarks/results/methods.jsonl")
    rows = latest_pairs(read_results(results)) if args.report_only else \
        check_methods(results, args.models or None, args.method or None, retry=args.retry_failed,
                      input_shape=input_shape(args.input_shape or "1,28,28"))
    if args.out:
        command = "fewprune " + " ".join(a for a in args.argv if a != "--report-only")
        wanted = {(m, n) for m in args.models or MODELS for n in args.method or method_names()}
        unchecked = len(wanted - {(r["model"], r["method"]) for r in rows})
        write_text_atomic(Path(args.out), method_coverage_markdown(rows, command, unchecked))
        print(f"report written to {args.out}")
    failed = [r for r in rows if r["status"] == "failed"]
    print(f"{sum(r['status'] == 'ok' for r in rows)} of {len(rows)} method × model pairs run, "
          f"{sum(r['status'] == 'refused' for r in rows)} refused with a reason, {len(failed)} fail")
    return 1 if failed else 0


def cmd_check(args) -> int:
    """Prune, check and reload models; with --torchvision every torchvision classifier, into a report."""
    from ..bench import read_results
    from ..bench.coverage import check_model, check_torchvision, coverage_markdown, latest_rows, torchvision_models

    if args.out:
        check_writable(args.out)  # before the models are checked, which can take a while
    if args.methods:
        return _check_methods(args)
    shape = input_shape(args.input_shape or "3,224,224")
    if args.torchvision:
        results = Path(args.results or "benchmarks/results/torchvision.jsonl")
        if args.recheck and not args.models:
            raise SystemExit("--recheck needs the torchvision names to check again")
        rows = latest_rows(read_results(results)) if args.report_only else \
            check_torchvision(results, args.models or None, shape, args.macs, args.retry_failed, recheck=args.recheck)
        rows = [r for r in rows if not args.models or r["model"].removeprefix("torchvision:") in args.models]
        if args.out:
            checked = {r["model"].removeprefix("torchvision:") for r in rows}
            unchecked = [n for n in (args.models or torchvision_models()) if n not in checked]
            command = "fewprune " + " ".join(a for a in args.argv if a != "--report-only")
            write_text_atomic(Path(args.out), coverage_markdown(rows, command, unchecked))
            print(f"report written to {args.out}")
    else:
        if not args.models:
            raise SystemExit("name the models to check (e.g. torchvision:resnet18 resnet56), or pass --torchvision")
        rows = [check_model(m, shape, args.macs) for m in args.models]
        if args.out:
            command = "fewprune " + " ".join(args.argv)
            write_text_atomic(Path(args.out), coverage_markdown(rows, command, what="the models named"))
            print(f"report written to {args.out}")
    failed = [r for r in rows if r["status"] != "ok"]
    for r in rows:
        verdict = "refused" if r["status"] == "refused" else "FAILS"
        print(f"{r['model']}: " + ("ok" if r["status"] == "ok" else f"{verdict} at {r['stage']}: {r['error']}"))
    print(f"{len(rows) - len(failed)} of {len(rows)} models prune, match their masked teacher and reload exactly")
    if failed and not args.input_shape:  # a model of other inputs fails on the default ones
        print(f"(each model ran on random {'×'.join(map(str, shape))} images; give your model's input with "
              "--input-shape C,H,W)")
    return 1 if failed else 0

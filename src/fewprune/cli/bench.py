"""``fewprune bench``: run a sweep, report on it, re-time it or merge its shards."""

from __future__ import annotations

from .arguments import shard_spec


def cmd_bench(args) -> int:
    """``fewprune bench CONFIG``: run the sweep's missing jobs (or only report, give its status, re-time its
    structures or merge shards' results), then write its report and plots."""
    import torch as _torch

    from ..bench import SweepConfig, run_sweep, write_report

    if args.again and not args.remeasure_latency:
        raise SystemExit("fewprune: error: --again goes with --remeasure-latency (it times the cells again)")
    if args.device and (args.status or args.report_only or args.remeasure_latency or args.merge):
        raise SystemExit("fewprune: error: --device says where jobs run; --status, --report-only, --merge and "
                         "--remeasure-latency (CPU timings) run none")
    chosen = args.seeds or args.models or args.methods
    if args.csv and (args.status or args.report_only or args.remeasure_latency or args.merge or chosen or args.device):
        raise SystemExit("fewprune: error: --csv writes the table of every job's figures and runs nothing; it goes "
                         "alone")
    if args.merge and (args.status or args.report_only or args.remeasure_latency or chosen):
        raise SystemExit("fewprune: error: --merge copies finished jobs in and writes the report; it goes alone")
    if chosen and (args.report_only or args.remeasure_latency):
        raise SystemExit("fewprune: error: --seeds / --models / --methods choose which jobs run (or which --status "
                         "counts); --report-only and --remeasure-latency cover the whole sweep")
    config = SweepConfig.read(args.config)
    if args.csv:
        return _write_csv(config, args.csv)
    if args.status:
        from ..bench.status import status_markdown, sweep_status

        lines = sweep_status(config, seeds=args.seeds, models=args.models, methods=args.methods)
        filters = " ".join(f"--{name} {','.join(map(str, value))}" for name, value in
                           (("seeds", args.seeds), ("models", args.models), ("methods", args.methods)) if value)
        print(status_markdown(config, lines, chosen=filters), end="")
        return 0
    if args.threads:
        _torch.set_num_threads(args.threads)
    if args.merge:
        from ..bench.sweep import merge_results

        merge_results(config, args.merge)
        summary = write_report(config)
        print(f"report: {summary['report']} ({summary['rows']} result rows); plots: {', '.join(summary['plots'])}")
        return 0
    if args.remeasure_latency:
        from ..bench.relatency import remeasure

        remeasure(config, threads=args.threads, again=args.again)
        summary = write_report(config)
    else:
        summary = write_report(config) if args.report_only else run_sweep(
            config, executor=args.executor, address=args.address, retry_failed=args.retry_failed,
            shard=shard_spec(args.shard), seeds=args.seeds, models=args.models, methods=args.methods,
            device=args.device)
    print(f"report: {summary['report']} ({summary['rows']} result rows); plots: {', '.join(summary['plots'])}")
    return 130 if summary.get("stopped") else 0  # stopped on Ctrl-C / SIGTERM: a script running sweeps stops too


def _write_csv(config, path: str) -> int:
    """``bench CONFIG --csv PATH``: the sweep's table; never over the sweep's own files."""
    from pathlib import Path

    from ..bench.export import write_csv

    own = {Path(p).resolve() for p in (config.source, config.results, config.report)}
    if Path(path).resolve() in own:
        raise SystemExit(f"fewprune: error: --csv {path} would overwrite the sweep's own config, results or report")
    count = write_csv(config, path)
    print(f"{path}: {count} jobs of {config.name}")
    return 0

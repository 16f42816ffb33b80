"""``fewprune prune`` (and its ``--dry-run`` preview) and ``fewprune demo``, the embedded default job."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import data, metrics
from ..allocation.speedup import describe_search
from ..devices import resolve_device
from ..files import absolute_spec, check_output
from ..models import zoo
from ..recovery import SCHEDULE_FLAGS
from .inputs import evaluation_set, fixed_subset, load_model_for, read_dataset
from .outputs import metrics_table, onnxruntime_latency, rich_console


def target_from(args):
    """The compression target the flags name (``--macs``, ``--params``, ``--channels``, ``--speed-up``,
    ``--blocks``); by default half of the MACs."""
    from ..allocation import Target

    given = {k: getattr(args, k) for k in ("macs", "params", "channels", "speedup", "blocks")
             if getattr(args, k) is not None}
    return Target(**(given or {"macs": 0.5}))


def cmd_prune(args) -> int:
    """``fewprune prune``: compress the model with a few samples, judge student and teacher side by side, save
    the result (or, with ``--dry-run``, only preview the plan)."""
    from .. import api, result_files

    if args.out is None and not args.dry_run:
        raise ValueError("prune needs --out (where the result goes), or --dry-run to preview the plan alone")
    if not args.dry_run:  # fail before any work is spent
        check_output(args.out, args.force)
    if (Path(args.model) / "plan.json").is_file():  # a result's plan is relative to its teacher's architecture
        raise ValueError(f"{args.model} is a pruning result; pruning it again is not supported (a saved result holds "
                         "one plan against its teacher): prune the teacher to the larger target instead")
    target = target_from(args)
    device = resolve_device(args.device)  # a GPU that is not there is named before any work
    train = read_dataset(args, "train")
    few = data.few_shot(train, n=args.samples if args.per_class is None else None, per_class=args.per_class,
                        seed=args.seed)
    # our own copy of the user's model: it moves to the device, and the teacher and student are measured there
    teacher = load_model_for(args.model, train.info, args.weights, args.allow_pickle, args.adapt).to(device)
    console = rich_console()
    labels = "no labels" if few.targets is None else "labels hidden" if args.no_labels else ""
    console.print(f"[bold]{args.method}[/bold] on {args.model}: {target.describe()}, {len(few)} samples "
                  f"(seed {args.seed}{', ' + labels if labels else ''})" + (f", on {device}" if device.type != "cpu"
                                                                             else ""))
    if args.dry_run:
        return _preview_plan(args, teacher, few, target, console)
    test, split = evaluation_set(args, train, few)
    test = fixed_subset(test, args.eval_limit)
    schedule = {key: value for key in SCHEDULE_FLAGS if (value := getattr(args, key)) is not None}
    result = api.compress(teacher, few, method=args.method, target=target, seed=args.seed, labels=not args.no_labels,
                          round_to=args.round_to, min_width=args.min_width, schedule=schedule, protect=args.protect,
                          options=dict(args.option))
    example = few.tensors()[0][:1]
    if test.targets is None:  # unlabelled images: the student is judged by how often it predicts the teacher's class
        reference = metrics.predict(teacher, test, description="teacher")[0]
        rows = {"teacher": {**metrics.measure(teacher, None, example), "agreement": 1.0, "samples": len(reference)},
                "student": metrics.measure(result.student, test, example, reference=reference)}
    else:
        rows = {who: metrics.measure(model, test, example) for who, model in (("teacher", teacher),
                                                                              ("student", result.student))}
    if args.onnx:  # the deployment runtime's view: both models exported and timed under onnxruntime
        for who, model in (("teacher", teacher), ("student", result.student)):
            rows[who]["onnxruntime"] = onnxruntime_latency(model, example)
    # Paths as absolute ones, so that `--model OUT` finds its dataset and rebuilds the student from any folder
    # (the architecture comes from the teacher's spec; the weights from OUT).
    result.report["evaluation"] = {**rows, "split": split, "dataset": absolute_spec(args.data),
                                   **({"data_root": str(Path(args.data_root).resolve())} if args.data_root else {}),
                                   **({"classes": list(test.info.classes)} if getattr(test.info, "classes", None)
                                      else {})}
    result.report["command"] = "fewprune " + " ".join(args.argv)
    result.report["working_directory"] = str(Path.cwd())  # where the command's relative paths pointed
    result.report["teacher_model"] = {"spec": absolute_spec(args.model), "adapt": args.adapt,
                                      "input": train.info.input_convention()}
    if "dataset" in result.few_shot:  # the samples were drawn from --data
        result.few_shot["dataset"] = absolute_spec(args.data)
    out = result_files.save(result, args.out, force=args.force, onnx_input=example if args.onnx else None)
    console.print(metrics_table(rows, split="test" if split == "test" else "held-out",
                                title=f"{args.method}, {target.describe()}, {len(few)} samples, seed {args.seed}",
                                speed_up=True))
    drops = [(name, t, s) for name, t, s in result_files.per_class_changes(result.report["evaluation"])[:3] if s < t]
    if drops:
        console.print("largest per-class drops: " + ", ".join(
            f"{name} {100 * (s - t):+.2f} ({100 * t:.2f} → {100 * s:.2f})" for name, t, s in drops)
            + " (every class in report.md)")
    if "speedup_search" in result.report:
        console.print(describe_search(result.report["speedup_search"]))
    hint = _speed_up_hint(rows, args, target)
    if hint:
        console.print(hint)
    console.print(f"compression took {result.report['wall_seconds']:.1f} s; saved to {out}")
    return 0


def _speed_up_hint(rows: dict, args, target) -> str | None:
    """A pointer to the flags that make CPU time follow MACs, when the student's measured speed-up (batch 64) falls
    under 0.8 of its MAC reduction and some of those flags were not given."""
    speedup = metrics.measured_speedup(rows["teacher"], rows["student"])
    if speedup is None or target.kind == "blocks":
        return None
    ratio = speedup / (rows["teacher"]["macs"] / rows["student"]["macs"])
    missing = [flag for flag, given in (("--round-to auto", args.round_to), ("--min-width auto", args.min_width),
                                        ("--blocks auto", target.blocks)) if given is None]
    if ratio >= 0.8 or not missing:
        return None
    return (f"the measured speed-up is {ratio:.2f} of the MAC reduction here: {' '.join(missing)} usually bring "
            "this CPU's time closer to the MACs removed (README, 'CPU speed-up')")


# --dry-run runs each training step of the recovery this many iterations, to time a step on this machine
TIMED_ITERATIONS = 8


def _preview_plan(args, teacher, few, target, console) -> int:
    """``prune --dry-run``: the method's plan, timed against the teacher, and the recovery's time projected from a
    short run of it (each training step cut to a few iterations); nothing saved."""
    from dataclasses import replace

    from rich.table import Table

    from .. import api, methods
    from ..recovery import projected_seconds

    # the options first: a recovery's are checked against the method's steps
    schedule = {key: value for key in SCHEDULE_FLAGS if (value := getattr(args, key)) is not None}
    recipe = methods.with_options(args.method, dict(args.option))
    recipe = methods.with_schedule(recipe, **schedule) if schedule else recipe
    lengths = {step: (iterations, batch_size) for step, iterations, batch_size in methods.training_lengths(recipe)}
    timed = methods.with_schedule(recipe, iterations=TIMED_ITERATIONS) if lengths else recipe
    result = api.compress(teacher, few, method=replace(timed, label=args.method),  # errors name it as typed
                          target=target, seed=args.seed, labels=not args.no_labels, round_to=args.round_to,
                          min_width=args.min_width, protect=args.protect)
    widths = Table(title=f"plan of {args.method} (widths before → after)")
    for column in ("group or block", "kind", "before", "after"):
        widths.add_column(column, justify="left" if column in ("group or block", "kind") else "right")
    for group, kind, before, after in result.plan.summary():
        widths.add_row(group, kind, str(before), str(after))
    console.print(widths)
    example = few.tensors()[0][:1]
    rows = {who: metrics.measure(model, None, example)
            for who, model in (("teacher", teacher), ("student", result.student))}
    console.print(metrics_table(rows, title=f"{args.method}, {target.describe()}: the structure alone", speed_up=True))
    if "speedup_search" in result.report:
        console.print(describe_search(result.report["speedup_search"]))
    seconds = sum(v for k, v in result.report["timings"].items() if k != "recover_s")
    console.print(f"dry run: the plan took {seconds:.1f} s to decide; nothing was saved")
    steps = result.report.get("recovery", {})
    if steps:  # what the recovery costs here: each step run short, its per-step time times its full length
        parts, total = [], 0.0
        for step, stats in steps.items():
            spent = stats["wall_seconds"]
            if step in lengths:
                iterations, batch_size = lengths[step]
                projected = projected_seconds(stats, spent, iterations, TIMED_ITERATIONS)
                each = (f", {stats['seconds_per_step']:.2g} s each" if "seconds_per_step" in stats
                        else f" (timed at {TIMED_ITERATIONS}, scaled)")
                size = f" of {min(batch_size, len(few))} images" if batch_size else ""
                per = f" per layer ({len(stats['layers'])})" if "layers" in stats else ""  # cd fits layer by layer
                parts.append(f"{step}: {iterations} steps{size}{per}{each}, {projected:.0f} s in all")
            else:
                projected = spent
                parts.append(f"{step}: {spent:.1f} s (closed form, run in full)")
            total += projected
        short = f"each training step run {TIMED_ITERATIONS} iterations here" if lengths else "run here"
        console.print(f"recovery ({short}, on this student; {'; '.join(parts)}): about {total / 60:.1f} min")
    return 0


def cmd_demo(args) -> int:
    """``fewprune demo``: the embedded default job, run as the ``prune`` command it spells out."""
    from . import main  # the package's, looked up when called

    names = zoo.list()
    if not names:
        print("no teacher is shipped yet", file=sys.stderr)
        return 1
    name = args.teacher or ("resnet56-fmnist" if "resnet56-fmnist" in names else names[0])
    argv = ["prune", "--model", f"zoo:{name}", "--data", zoo.manifest(name)["dataset"], "--samples", "50",
            "--method", "cma+mir-blocks", "--macs", "0.5", "--blocks", "auto", "--min-width", "auto",
            "--round-to", "auto", "--out", args.out, "--force"]
    if args.eval_limit:
        argv += ["--eval-limit", str(args.eval_limit)]
    if args.device:
        argv += ["--device", args.device]
    return main(argv)

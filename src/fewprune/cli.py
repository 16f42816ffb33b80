"""The ``fewprune`` command line: prune, bench, eval, train, zoo, methods, explain, curve, check, demo."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from . import data, metrics, models
from .criteria.asca import PRICES
from .devices import resolve_device
from .files import absolute_spec, check_output, check_writable, mark_output, write_text_atomic
from .models import external, zoo
from .models.outputs import check_samples
from .recovery import SCHEDULE_FLAGS


def _console():
    """The console for tables: a terminal's own width; piped or redirected output is not cut to 80 columns,
    so a table written to a file keeps every name whole."""
    import os

    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=200)
    return console


def _method_options(method: str, as_json: bool) -> int:
    """``fewprune methods NAME``: the method's recipe and every option ``--option PART.NAME=VALUE`` can set."""
    from rich.markup import escape
    from rich.table import Table

    from .methods import get, part_options

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
    _console().print(table)
    print(f"the training schedule: {', '.join(SCHEDULE_FLAGS.values())}")
    return 0


def load_model_for(spec: str, info: data.DatasetInfo, weights: str | None = None, allow_pickle: bool = False,
                   adapt: bool = False):
    """A model from a CLI spec, shaped for the dataset described by ``info``.

    A folder written by ``fewprune prune`` is a spec too: its student, rebuilt
    from the architecture its report names, its plan and its weights.
    """
    if (Path(spec) / "plan.json").is_file():
        if weights:
            raise ValueError(f"{spec} is a pruning result with its own weights; --weights does not apply to it")
        return _saved_student(Path(spec), info)
    model = models.build(spec, num_classes=info.num_classes or None, in_channels=info.input_shape[0],
                         image_size=info.input_shape[1], weights=weights, allow_pickle=allow_pickle, adapt=adapt)
    if weights is None and not spec.startswith("zoo:") and not (spec.endswith(".py") or ".py:" in spec):
        # an architecture name alone builds it untrained: a forgotten --weights would otherwise pass unnoticed
        print(f"fewprune: note: {spec} has random weights (no --weights given, and fewprune downloads nothing); "
              "pass --weights FILE to use a trained model", file=sys.stderr)
    return model.eval()


def _saved_student(directory: Path, info: data.DatasetInfo):
    from . import api

    return api.load(directory, api.recorded_architecture(directory, num_classes=info.num_classes or None,
                                                         in_channels=info.input_shape[0],
                                                         image_size=info.input_shape[1]))


def metrics_table(rows: dict[str, dict], title: str = "", speed_up: bool = False, split: str = "test"):
    """A rich table with one column per model (``rows`` maps a label to the output of :func:`measure`).

    With ``speed_up``, a last row gives the second column's MAC and measured (batch 64) speed-up over the first's.
    ``split`` names the images the accuracy is on ("test", "train", "held-out").
    """
    from rich.table import Table

    table = Table(title=title)
    table.add_column("")
    for label in rows:
        table.add_column(label, justify="right")
    first = next(iter(rows.values()))

    def line(name, fn):
        table.add_row(name, *[fn(r) for r in rows.values()])

    dense = first.get("per_pixel") or "mean_iou" in first  # a segmentation model: a class per pixel
    if "agreement" in first:  # unlabelled images: how often the model predicts what the teacher does
        line("agreement with the teacher, per pixel" if dense else "top-1 agreement with the teacher",
             lambda r: f"{100 * r['agreement']:.2f}%  ({r['samples']} images)")
    elif "accuracy" in first:
        line("pixel accuracy" if dense else f"{split} accuracy",
             lambda r: f"{100 * r['accuracy']:.2f}%  ({r['samples']} images)")
        if "mean_iou" in first:
            line("mean IoU", lambda r: f"{100 * r['mean_iou']:.2f}%")
    line("MACs", lambda r: f"{r['macs'] / 1e6:.2f} M")
    line("params", lambda r: f"{r['params'] / 1e6:.3f} M")
    for field, runtime in (("latency", "latency"), ("onnxruntime", "onnxruntime")):
        for key, lat in first.get(field, {}).items():
            line(f"{runtime} {key.replace('batch', 'batch ')} "
                 f"({lat.get('device') or metrics.threads_text(lat['threads'])})",
                 lambda r, f=field, k=key: f"{r[f][k]['median_ms']:.2f} ms "
                                           f"[{r[f][k]['p25_ms']:.2f}–{r[f][k]['p75_ms']:.2f}]")
    if speed_up:
        base, model = list(rows.values())[:2]
        ratio = lambda field: base[field]["batch64"]["median_ms"] / model[field]["batch64"]["median_ms"]  # noqa: E731
        table.add_row("MAC speed-up / measured speed-up (b64)", "", f"{base['macs'] / model['macs']:.2f}× / "
                      f"{ratio('latency'):.2f}×" + (f" (onnxruntime {ratio('onnxruntime'):.2f}×)"
                                                    if "onnxruntime" in model else ""))
    return table


def _subset(dataset, limit: int | None):
    if limit is None or limit >= len(dataset):
        return dataset
    return data.few_shot(dataset, n=limit, seed=0)


# the image-folder flags, by the name of the input-convention key each sets (data.input_convention)
IMAGE_FLAGS = {"image_size": "--image-size", "channels": "--image-channels", "mean": "--image-mean",
               "std": "--image-std", "resize": "--image-resize", "interpolation": "--image-interpolation"}


def _dataset(args, split: str):
    """``--data`` (from ``--data-root``) at ``split``. An ``imagefolder:`` dataset's images are read as the model
    reads its input (the convention a zoo teacher or a pruning result records, changed by the ``--image-*``
    flags), and its class folders are matched to the model's class names where these are known."""
    given = {key: getattr(args, flag[2:].replace("-", "_"), None) for key, flag in IMAGE_FLAGS.items()}
    given = {key: value for key, value in given.items() if value is not None}
    if not args.data.startswith("imagefolder:"):
        if given:
            flag = IMAGE_FLAGS[next(iter(given))]
            raise ValueError(f"{flag} sets how the images of an imagefolder: dataset are read; {args.data} has its "
                             "own size and normalisation")
        return data.load(args.data, split, root=args.data_root)
    model = getattr(args, "model", None)
    recorded = model_input_convention(model) or {}
    options = {**recorded, **given}
    if set(recorded) - set(given) and not getattr(args, "convention_noted", False):
        args.convention_noted = True  # once, though the train and test splits are both read
        c = data.input_convention(**{key: value for key, value in options.items() if key in IMAGE_FLAGS})
        print(f"fewprune: note: reading {args.data[len('imagefolder:'):]} as {model} takes its input: "
              f"{c['channels']} channel{'s' if c['channels'] > 1 else ''}, {c['image_size']}×{c['image_size']}, "
              f"mean {', '.join(f'{v:g}' for v in c['mean'])}, std {', '.join(f'{v:g}' for v in c['std'])}, "
              f"resize {c['resize'] if isinstance(c['resize'], str) else format(c['resize'], '.4g')}, "
              f"{c['interpolation']} (the --image-* flags change it)", file=sys.stderr)
    return data.load(args.data, split, **options)


def model_input_convention(model: str | None) -> dict | None:
    """How ``model`` reads an image folder (:func:`fewprune.data.input_convention`'s keywords): a zoo teacher's
    (from its manifest), a torchvision or timm model's (how its library evaluates its weights), a pruning
    result's (its report records the one its teacher was pruned with, else its teacher's); None for other
    models (ImageNet's convention applies)."""
    if not model:
        return None
    if model.startswith("zoo:") and model[4:] in zoo.list():
        return zoo.input_convention(model[4:])
    if model.startswith("torchvision:"):
        return external.torchvision_input_convention(model.removeprefix("torchvision:"))
    if model.startswith("timm:"):
        return external.timm_input_convention(model.removeprefix("timm:"))
    report = Path(model) / "report.json"
    if report.is_file():
        teacher = json.loads(report.read_text()).get("teacher_model") or {}
        return teacher.get("input") or (model_input_convention(teacher["spec"]) if teacher.get("spec") else None)
    return None


def input_convention_of(info: data.DatasetInfo) -> dict:
    """The input convention of the images a model was given (recorded with a result, so ``--model RESULT`` reads
    an image folder the same way): an image folder's own, a built-in dataset's images taken as they are; with
    the class names, if known, in label order."""
    return {"image_size": info.input_shape[1], "channels": info.input_shape[0], "mean": list(info.mean),
            "std": list(info.std), "resize": info.extra.get("resize", "fit"),
            "interpolation": info.extra.get("interpolation", "bilinear"),
            **({"classes": list(info.classes)} if info.classes else {})}


def _held_out(name: str, dataset, drawn: set[int], seed: int):
    """The images of ``dataset`` not among the ``drawn`` samples (for a dataset with no test split); refused with
    the reason when none is left."""
    held_out = [i for i in range(len(dataset)) if i not in drawn]
    if not held_out:
        raise ValueError(f"{name} has no test split and every image is among the samples: nothing is left to "
                         "evaluate on (add a test/ folder or draw fewer samples)")
    return data.FewShot(dataset, held_out, seed)


def _evaluation_set(args, train, few) -> tuple[object, str]:
    """The images the result is judged on, and how to name them: the test split, or, where the dataset has
    none (a folder with no test/ folder), its images that are not among the few samples."""
    test = _dataset(args, "test")
    if not test.info.extra.get("same_images_every_split"):
        return test, "test"
    return _held_out(args.data, train, set(few.indices), few.seed), "held-out (the images not drawn as samples)"


def _without_result_samples(args, dataset) -> tuple[object, str]:
    """``dataset`` and its split's name; for a pruning result judged on the folder it was compressed from, when that
    folder has no test split: its images not among the result's samples, named "held-out" (as prune judged it)."""
    few_file = Path(args.model) / "few_shot.json"
    if not dataset.info.extra.get("same_images_every_split") or not few_file.is_file():
        return dataset, args.split
    few = json.loads(few_file.read_text())
    drawn = set(few.get("indices", []))
    same_folder = absolute_spec(few.get("dataset") or "") == absolute_spec(args.data)
    if not same_folder or not drawn or max(drawn) >= len(dataset):
        return dataset, args.split
    print(f"fewprune: note: {args.data} has no test split; the {len(drawn)} images {args.model} was compressed with "
          "are left out", file=sys.stderr)
    return _held_out(args.data, dataset, drawn, few.get("seed", 0)), "held-out"


def cmd_eval(args) -> int:
    device = resolve_device(args.device)  # a GPU that is not there is named before the data is read
    if args.json:
        check_writable(args.json, "--json")
    dataset, split = _without_result_samples(args, _dataset(args, args.split))
    dataset = _subset(dataset, args.limit)
    model = load_model_for(args.model, dataset.info, args.weights, args.allow_pickle, args.adapt).to(device)
    item = dataset[0]  # (image, label), or an image alone from a folder of unlabelled images
    example = (item[0] if isinstance(item, tuple | list) else item).unsqueeze(0)
    check_samples(model, example.to(device), who=args.model, what=f"{args.data}'s images")
    result = metrics.measure(model, dataset, example, progress=not args.quiet)
    if args.onnx:
        result["onnxruntime"] = _onnxruntime_latency(model, example)
    result.update(model=args.model, data=args.data, split=split, versions=metrics.versions())
    _console().print(metrics_table({args.model: result}, title=f"{args.model} on {args.data} ({split})",
                                   split=split))
    if args.json:
        _write_json_atomic(Path(args.json), result)
    return 0


def _onnxruntime_latency(model, example) -> dict:
    """``model`` exported to a temporary ONNX file and timed under onnxruntime (batch 1 and 64)."""
    from .api import export_onnx

    with tempfile.TemporaryDirectory() as folder:
        return metrics.onnx_latency(export_onnx(model, Path(folder) / "model.onnx", example, check=False), example)


def _write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def cmd_train(args) -> int:
    from .models.recipes import train_teacher

    if args.asca:
        if args.device not in (None, "cpu"):
            raise ValueError("--device is for teacher training; train --asca (gates and weights from scratch) runs "
                             "on the CPU")
        return _train_asca(args)
    out = Path(args.out or f"runs/train/{args.recipe}")
    check_writable(out)
    manifest = train_teacher(args.recipe, out, epochs=args.epochs, device=args.device)
    if args.install:
        import shutil

        target = zoo.WEIGHTS_DIR
        shutil.copy2(out / manifest["weights"], target / manifest["weights"])
        _write_json_atomic(target / f"{args.recipe}.json", manifest)
        print(f"installed {args.recipe} into {target}")
    return 0


def _train_asca(args) -> int:
    """``fewprune train RECIPE --asca macs=0.5``: ASCA from scratch, saved like a ``fewprune prune`` result."""
    from . import api
    from .allocation import Target
    from .models.recipes import recipes, train_asca_scratch

    kind, _, value = args.asca.partition("=")
    if kind not in ("macs", "params", "channels") or not value:
        raise ValueError(f"--asca takes macs=F, params=F or channels=F (a fraction to remove), not {args.asca!r}")
    target = Target(**{kind: float(value)})
    out = Path(args.out or f"runs/asca-scratch/{args.recipe}-{kind}{value}")
    check_output(out, args.force)
    checkpoint = out.with_name(out.name + ".partial.pt")  # hours of training survive an interruption
    result = train_asca_scratch(args.recipe, target, epochs=args.epochs, checkpoint=checkpoint,
                                gates={"price": args.gate_price} if args.gate_price != "target" else None)
    test = data.load(recipes.get(args.recipe).dataset, "test")
    example = test.batch([0])[0]
    result.report["evaluation"] = {"student": metrics.measure(result.student, test, example), "split": "test"}
    result.report["command"] = "fewprune " + " ".join(args.argv)
    result.report["teacher_model"] = {"spec": recipes.get(args.recipe).architecture, "adapt": False,  # see cmd_prune
                                      "input": input_convention_of(test.info)}
    api.save(result, out, force=args.force)
    checkpoint.unlink(missing_ok=True)
    e = result.report["evaluation"]["student"]
    print(f"asca-scratch {args.recipe}: test accuracy {100 * e['accuracy']:.2f}%, "
          f"{100 * result.report['macs_reduction']:.1f}% MACs removed; saved to {out}")
    return 0


def cmd_methods(args) -> int:
    from rich.table import Table

    from .methods import catalogue

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
    console = _console()
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


def cmd_zoo(args) -> int:
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
        _console().print(table)
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
    from .models.recipes import ACCURACY_TARGETS

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


ZOO_LATENCY_ROUNDS = 5


def _count_or_auto(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or 'auto', not {text!r}") from None


def target_from(args):
    from .allocation import Target

    given = {k: getattr(args, k) for k in ("macs", "params", "channels", "blocks") if getattr(args, k) is not None}
    return Target(**(given or {"macs": 0.5}))


def cmd_prune(args) -> int:
    from . import api

    if args.out is None and not args.dry_run:
        raise ValueError("prune needs --out (where the result goes), or --dry-run to preview the plan alone")
    if not args.dry_run:  # fail before any work is spent
        check_output(args.out, args.force)
    if (Path(args.model) / "plan.json").is_file():  # a result's plan is relative to its teacher's architecture
        raise ValueError(f"{args.model} is a pruning result; pruning it again is not supported (a saved result holds "
                         "one plan against its teacher): prune the teacher to the larger target instead")
    target = target_from(args)
    device = resolve_device(args.device)  # a GPU that is not there is named before any work
    train = _dataset(args, "train")
    few = data.few_shot(train, n=args.samples if args.per_class is None else None, per_class=args.per_class,
                        seed=args.seed)
    # our own copy of the user's model: it moves to the device, and the teacher and student are measured there
    teacher = load_model_for(args.model, train.info, args.weights, args.allow_pickle, args.adapt).to(device)
    console = _console()
    labels = "no labels" if few.targets is None else "labels hidden" if args.no_labels else ""
    console.print(f"[bold]{args.method}[/bold] on {args.model}: {target.describe()}, {len(few)} samples "
                  f"(seed {args.seed}{', ' + labels if labels else ''})" + (f", on {device}" if device.type != "cpu"
                                                                             else ""))
    if args.dry_run:
        return _preview_plan(args, teacher, few, target, console)
    test, split = _evaluation_set(args, train, few)
    test = _subset(test, args.eval_limit)
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
            rows[who]["onnxruntime"] = _onnxruntime_latency(model, example)
    # Paths as absolute ones, so that `--model OUT` finds its dataset and rebuilds the student from any folder
    # (the architecture comes from the teacher's spec; the weights from OUT).
    result.report["evaluation"] = {**rows, "split": split, "dataset": absolute_spec(args.data),
                                   **({"data_root": str(Path(args.data_root).resolve())} if args.data_root else {}),
                                   **({"classes": list(test.info.classes)} if getattr(test.info, "classes", None)
                                      else {})}
    result.report["command"] = "fewprune " + " ".join(args.argv)
    result.report["working_directory"] = str(Path.cwd())  # where the command's relative paths pointed
    result.report["teacher_model"] = {"spec": absolute_spec(args.model), "adapt": args.adapt,
                                      "input": input_convention_of(train.info)}
    if "dataset" in result.few_shot:  # the samples were drawn from --data
        result.few_shot["dataset"] = absolute_spec(args.data)
    out = api.save(result, args.out, force=args.force, onnx_input=example if args.onnx else None)
    console.print(metrics_table(rows, split="test" if split == "test" else "held-out",
                                title=f"{args.method}, {target.describe()}, {len(few)} samples, seed {args.seed}",
                                speed_up=True))
    drops = [(name, t, s) for name, t, s in api.per_class_changes(result.report["evaluation"])[:3] if s < t]
    if drops:
        console.print("largest per-class drops: " + ", ".join(
            f"{name} {100 * (s - t):+.2f} ({100 * t:.2f} → {100 * s:.2f})" for name, t, s in drops)
            + " (every class in report.md)")
    console.print(f"compression took {result.report['wall_seconds']:.1f} s; saved to {out}")
    return 0


def _preview_plan(args, teacher, few, target, console) -> int:
    """``prune --dry-run``: the method's plan without its recovery, timed against the teacher; nothing saved."""
    from dataclasses import replace

    from rich.table import Table

    from . import api, methods

    # the options first: a recovery's are checked against the method's steps, which the plan alone drops
    recipe_of_args = methods.with_options(args.method, dict(args.option))
    recipe = replace(recipe_of_args, recovery="none", augment=None,
                     label=args.method)  # errors name the method as typed, not its recovery-less recipe
    result = api.compress(teacher, few, method=recipe, target=target, seed=args.seed, labels=not args.no_labels,
                          round_to=args.round_to, min_width=args.min_width, protect=args.protect)
    widths = Table(title=f"plan of {args.method} (widths before → after)")
    for column in ("group or block", "kind", "before", "after"):
        widths.add_column(column, justify="left" if column in ("group or block", "kind") else "right")
    for group, kind, before, after in result.plan.summary():
        widths.add_row(group, kind, str(before), str(after))
    console.print(widths)
    example = few.tensors()[0][:1]
    rows = {who: metrics.measure(model, None, example)
            for who, model in (("teacher", teacher), ("student (no recovery)", result.student))}
    console.print(metrics_table(rows, title=f"{args.method}, {target.describe()}: the structure alone", speed_up=True))
    seconds = sum(v for k, v in result.report["timings"].items() if k != "recover_s")
    console.print(f"dry run: the plan took {seconds:.1f} s to decide; no recovery was trained and nothing was saved")
    schedule = {key: value for key in SCHEDULE_FLAGS if (value := getattr(args, key)) is not None}
    steps = methods.training_schedules(methods.with_schedule(recipe_of_args, **schedule) if schedule
                                       else recipe_of_args)
    if steps:  # what the recovery would cost: its training steps, timed here on this student
        from .recovery import training_step_seconds

        images = few.tensors()[0].to(example.device)
        step_seconds = {s.batch_size: training_step_seconds(result.student, teacher, images, s) for _, s in steps}
        parts = [f"{name}: {s.iterations} steps of {min(s.batch_size, len(images))} images, "
                 f"{step_seconds[s.batch_size]:.2f} s each" for name, s in steps]
        total = sum(s.iterations * step_seconds[s.batch_size] for _, s in steps)
        console.print(f"recovery ({'; '.join(parts)}; a step timed here: the student's forward and backward, the "
                      f"teacher's forward): about {total / 60:.1f} min of training, without closed-form steps and "
                      "per-step extras such as mixing")
    return 0


def cmd_bench(args) -> int:
    import torch as _torch

    from .bench import SweepConfig, run_sweep, write_report

    if args.again and not args.remeasure_latency:
        raise SystemExit("fewprune: error: --again goes with --remeasure-latency (it times the cells again)")
    if args.device and (args.status or args.report_only or args.remeasure_latency or args.merge):
        raise SystemExit("fewprune: error: --device says where jobs run; --status, --report-only, --merge and "
                         "--remeasure-latency (CPU timings) run none")
    if args.merge and (args.status or args.report_only or args.remeasure_latency or args.seeds or args.models):
        raise SystemExit("fewprune: error: --merge copies finished jobs in and writes the report; it goes alone")
    if (args.seeds or args.models) and (args.status or args.report_only or args.remeasure_latency):
        raise SystemExit("fewprune: error: --seeds / --models choose which jobs run; --status, --report-only and "
                         "--remeasure-latency cover the whole sweep")
    config = SweepConfig.read(args.config)
    if args.status:
        from .bench.status import status_markdown, sweep_status

        print(status_markdown(config, sweep_status(config)), end="")
        return 0
    if args.threads:
        _torch.set_num_threads(args.threads)
    if args.merge:
        from .bench.sweep import merge_results

        merge_results(config, args.merge)
        summary = write_report(config)
        print(f"report: {summary['report']} ({summary['rows']} result rows); plots: {', '.join(summary['plots'])}")
        return 0
    if args.remeasure_latency:
        from .bench.relatency import remeasure

        remeasure(config, threads=args.threads, again=args.again)
        summary = write_report(config)
    else:
        summary = write_report(config) if args.report_only else run_sweep(
            config, executor=args.executor, address=args.address, retry_failed=args.retry_failed,
            shard=_shard(args.shard), seeds=args.seeds, models=args.models, device=args.device)
    print(f"report: {summary['report']} ({summary['rows']} result rows); plots: {', '.join(summary['plots'])}")
    return 130 if summary.get("stopped") else 0  # stopped on Ctrl-C / SIGTERM: a script running sweeps stops too


def _positive(kind, or_zero: bool = False):
    """An argparse type: a number of ``kind`` above zero (``or_zero``: zero too)."""
    def parse(text: str):
        value = kind(text)
        if value < 0 or (value == 0 and not or_zero):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if or_zero else 'above 0'}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error
    return parse


_seed = _positive(int, or_zero=True)  # torch and numpy refuse negative seeds


def _comma_list(kind):
    """An argparse type: comma-separated values of ``kind``."""
    def parse(text: str) -> list:
        return [kind(part) for part in text.split(",") if part.strip()]

    parse.__name__ = kind.__name__
    return parse


def _resize(text: str) -> str | float:
    """``--image-resize``: imagenet, fit, or the crop's share of the shorter side in (0, 1]."""
    if text in data.RESIZE_MODES:
        return text
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(f"must be {' or '.join(data.RESIZE_MODES)} or a number in (0, 1], not {text}")
    return share


def _shard(text: str | None) -> tuple[int, int] | None:
    """``--shard I/N`` as (I, N); None when not given."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise SystemExit(f"fewprune: error: --shard wants I/N (e.g. 0/2), not {text!r}") from None
    return index, count


@contextmanager
def _output_folder(out: Path, force: bool):
    """Yield a staging folder that replaces ``out`` only when the block succeeds (never half-written)."""
    check_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        mark_output(staging)
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def cmd_explain(args) -> int:
    from .explain import concept_mask_figures, lrp_figures

    if not (args.concept_masks or args.lrp):
        raise ValueError("say what to explain: --concept-masks and/or --lrp")
    out = Path(args.out)
    with _output_folder(out, args.force) as staging:
        test = _dataset(args, "test")
        model = load_model_for(args.model, test.info, args.weights, args.allow_pickle, args.adapt)
        images, labels = data.few_shot(test, n=args.images, seed=args.seed).tensors()
        files, colours = [], {"mean": test.info.mean, "std": test.info.std}
        if args.concept_masks:
            files += concept_mask_figures(model, images.float(), staging, theta=args.theta, **colours)
        if args.lrp:
            files += lrp_figures(model, images.float(), labels, staging, layer=args.layer, **colours)
    print(f"wrote {len(files)} figures to {out}: " + ", ".join(f.name for f in files[-3:]))
    return 0


def _option(text: str) -> tuple[str, object]:
    """``--option PART.NAME=VALUE`` → ``("PART.NAME", value)``, the value read as YAML (0.95, false, [0.1, 0.7])."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(f"{text!r}: write PART.NAME=VALUE, e.g. allocation.max_ratio=0.95")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not YAML ({err})") from None


def _fractions(text: str) -> list[float]:
    """``0:0.9:0.1`` (start:stop:step, inclusive) or ``0,0.3,0.5``."""
    if ":" in text:
        start, stop, step = (float(v) for v in text.split(":"))
        count = round((stop - start) / step)
        return [round(start + i * step, 6) for i in range(count + 1)]
    return [float(v) for v in text.split(",")]


def cmd_compare(args) -> int:
    """Saved results side by side, as each recorded its figures (nothing is measured again)."""
    from rich.table import Table

    from . import results

    if args.out:
        check_writable(args.out)
    summaries = [results.summary(r) for r in args.results]
    table = Table(title="results side by side (as each recorded them)")
    for column in results.COLUMNS:
        table.add_column(column, justify="left" if column in ("result", "method", "target", "score") else "right")
    for s in summaries:
        table.add_row(*results.row_cells(s))
    _console().print(table)
    for note in results.caveats(summaries):
        print(f"note: {note}")
    if args.out:
        write_text_atomic(Path(args.out), results.markdown(summaries, "fewprune " + " ".join(args.argv)))
        print(f"written to {args.out}")
    return 0


def cmd_curve(args) -> int:
    from .bench.curve import accuracy_curves, write_curves

    out = Path(args.out)
    with _output_folder(out, args.force) as staging:
        train = _dataset(args, "train")
        test = _subset(_dataset(args, "test"), args.eval_limit)
        few = data.few_shot(train, n=args.samples if args.per_class is None else None, per_class=args.per_class,
                            seed=args.seed)
        teacher = load_model_for(args.model, train.info, args.weights, args.allow_pickle, args.adapt)
        methods = args.methods.split(",")
        result = accuracy_curves(teacher, few, methods, _fractions(args.fractions), test, seed=args.seed)
        result["command"] = "fewprune " + " ".join(args.argv)
        write_curves(result, staging, f"{args.model}: accuracy vs channels removed, {len(few)} samples, "
                                      f"seed {args.seed}")
    for method, curve in result["curves"].items():
        print(f"{method}: AUC {100 * curve['auc']:.2f} up to {100 * curve['reached']:.0f}%, "
              f"{100 * curve['common_auc']:.2f} over the common range"
              + (f" ({len(curve['failed'])} fractions not reached)" if curve["failed"] else ""))
    print(f"curves written to {out} (curve.md, curve.png, curve.json)")
    return 0


def _shape(text: str) -> tuple[int, int, int]:
    """``C,H,W`` as a tuple of three positive ints; anything else is refused with the form wanted."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise SystemExit(f"--input-shape {text!r}: want C,H,W, e.g. 3,224,224")
    return shape


def _check_methods(args) -> int:
    """Every method on every model family (or those named): runs, is refused with a reason, or fails."""
    from .bench import read_results
    from .bench.method_coverage import MODELS, check_methods, latest_pairs, method_coverage_markdown, method_names

    results = Path(args.results or "benchmarks/results/methods.jsonl")
    rows = latest_pairs(read_results(results)) if args.report_only else \
        check_methods(results, args.models or None, args.method or None, retry=args.retry_failed,
                      input_shape=_shape(args.input_shape or "1,28,28"))
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
    from .bench import read_results
    from .bench.coverage import check_model, check_torchvision, coverage_markdown, latest_rows, torchvision_models

    if args.out:
        check_writable(args.out)  # before the models are checked, which can take a while
    if args.methods:
        return _check_methods(args)
    shape = _shape(args.input_shape or "3,224,224")
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
    return 1 if failed else 0


def cmd_demo(args) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewprune", description=__doc__)
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                        help="import your own parts (criteria, recoveries, methods, models …) before the command, so "
                             "it can name them; repeatable (also $FEWPRUNE_PLUGINS, separated like PATH)")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument("--model", required=True,
                       help="zoo:NAME, a registered name, torchvision:NAME, timm:NAME or path/to/file.py:factory")
        p.add_argument("--weights", help="safetensors file, or a torch checkpoint (loaded with weights_only=True)")
        p.add_argument("--allow-pickle", action="store_true", help="trust and unpickle a non-weights-only checkpoint")
        p.add_argument("--adapt", action="store_true",
                       help="after loading weights, change input channels / classes to fit the dataset")
        p.add_argument("--data", help="fashion-mnist, fashion-mnist-scenes (segmentation), cifar10, cifar100 or "
                                      "imagefolder:PATH (class folders, images/ + masks/, or images alone); "
                                      "default: the dataset of a zoo teacher or pruning result, else fashion-mnist")
        p.add_argument("--data-root", help="folder holding the dataset files (overrides the default location)")
        folder = p.add_argument_group(
            "image folders (--data imagefolder:PATH): how its files become the model's input. Default: the "
            "convention a zoo teacher or pruning result records (a Fashion-MNIST teacher: 28×28 grey, its mean/std, "
            "fit), else ImageNet's (224, RGB, ImageNet mean/std, resize 256 → crop 224)")
        folder.add_argument("--image-size", type=_positive(int), metavar="N",
                            help="centre-crop to N×N, the input size the model was trained on")
        folder.add_argument("--image-channels", type=int, choices=[1, 3], help="3: RGB; 1: greyscale")
        folder.add_argument("--image-mean", type=_comma_list(float), metavar="M[,M,M]",
                            help="normalisation mean: one value, or one per channel (pixels scaled to 0…1)")
        folder.add_argument("--image-std", type=_comma_list(float), metavar="S[,S,S]",
                            help="normalisation std, as --image-mean")
        folder.add_argument("--image-resize", type=_resize, metavar="imagenet|fit|F",
                            help="imagenet: shorter side to N·256/224, then the centre crop; fit: shorter side to N; "
                                 "a number F in (0, 1]: shorter side to N/F (timm's crop_pct)")
        folder.add_argument("--image-interpolation", choices=list(data.INTERPOLATIONS), help="the resizing filter")

    def device_arg(p, what: str):
        p.add_argument("--device", metavar="cpu|cuda|cuda:N|auto",
                       help=f"{what} (default cpu; auto: a CUDA GPU if one is visible). A GPU gives the CPU's "
                            "figures to float tolerance, not bit for bit; latency is then the GPU's")

    p = sub.add_parser("prune", help="compress a model with a few samples and compare it with its teacher")
    model_args(p)
    device_arg(p, "where the compression runs, and the teacher and student are evaluated and timed")
    p.add_argument("--samples", type=int, default=50, help="number of training images to use (default 50)")
    p.add_argument("--per-class", type=int, help="instead of --samples: this many images of every class")
    p.add_argument("--method", default="l1+kd", help="a registered method or criterion[@allocation][+recovery]")
    for k, help_text in (("macs", "fraction of MACs to remove"), ("params", "fraction of parameters to remove"),
                         ("channels", "fraction of each group's channels to remove")):
        p.add_argument(f"--{k}", type=float, help=help_text)
    p.add_argument("--blocks", type=_count_or_auto, metavar="N|auto",
                   help="number of residual blocks to drop: alone for block-level methods; with --macs/--params a "
                        "channel method drops these blocks (picked by its block criterion), then prunes channels to "
                        "the target; 'auto': the fewest blocks with which the target can be met")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--no-labels", action="store_true", help="compress without reading the samples' labels")
    p.add_argument("--round-to", metavar="N|auto",
                   help="keep channel widths above N a multiple of N, so CPU kernels turn removed MACs into saved "
                        "time; 'auto': this CPU's channel block (16 with AVX-512, 8 with AVX2)")
    p.add_argument("--min-width", metavar="N|auto",
                   help="prune no channel group below N channels (narrower groups not at all): padded CPU kernels "
                        "run narrower layers no faster; 'auto': this CPU's channel block")
    recovery = p.add_argument_group("recovery schedule (default: each recovery's own, e.g. MiR 800 iterations of "
                                    "64 images at lr 0.02)")
    recovery.add_argument("--iterations", type=_positive(int), help="training iterations of each training recovery")
    recovery.add_argument("--lr", type=_positive(float), help="its peak learning rate")
    recovery.add_argument("--batch-size", type=_positive(int), help="its mini-batch size (also BN recalibration's)")
    recovery.add_argument("--decay", choices=["cosine", "step"],
                          help="learning-rate decay: cosine to 0, or ×0.1 at 40%% of the iterations (MiR's authors)")
    p.add_argument("--eval-limit", type=int, help="evaluate on a fixed subset of this many test images")
    p.add_argument("--onnx", action="store_true",
                   help="also export student.onnx (checked with onnxruntime), and time teacher and student under "
                        "onnxruntime (CPU, the same threads) beside torch")
    p.add_argument("--protect", action="append", default=[], metavar="LAYER",
                   help="keep this layer's output width as it is (repeatable; the classifier always is)")
    p.add_argument("--option", action="append", default=[], type=_option, metavar="PART.NAME=VALUE",
                   help="set an option of the method's criterion, allocation or a recovery step (repeatable), e.g. "
                        "allocation.max_ratio=0.95, mir.recalibrate=false, allocation.bounds=[0.1,0.7]; the VALUE "
                        "is read as YAML; the report records it")
    p.add_argument("--dry-run", action="store_true",
                   help="only decide the plan and time it: the widths, MACs, params and measured speed-up of the "
                        "structure, before any recovery is trained; nothing is saved (--out not needed)")
    p.add_argument("--out", help="output folder (plan, weights, reports)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("bench", help="run a sweep config (resumable) and write its report and plots")
    p.add_argument("config", help="sweep YAML (see benchmarks/)")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from existing results")
    p.add_argument("--status", action="store_true",
                   help="run nothing: list the jobs done, failed, reusable from the sweeps beside it, running and left, "
                        "with the CPU time left estimated from jobs already measured")
    p.add_argument("--remeasure-latency", action="store_true",
                   help="time every finished job's structure again, back to back with its teacher, on a quiet "
                        "machine; the report's speed-ups then use these timings")
    p.add_argument("--again", action="store_true",
                   help="with --remeasure-latency: time cells already re-timed again too (the new timings replace "
                        "ones taken while the machine was not quiet)")
    p.add_argument("--threads", type=int, help="torch threads for in-process cells")
    p.add_argument("--shard", metavar="I/N", help="run every N-th family of jobs from the I-th (0-based), then help "
                   "with the others' unstarted ones: start N processes with 0/N … N-1/N to share one sweep and its "
                   "results file on one machine")
    p.add_argument("--seeds", type=_comma_list(int), metavar="S[,S…]",
                   help="run only the jobs of these seeds this time (e.g. 0: one seed of every setting first); "
                        "training jobs have no seed and run anyway; the report covers every finished row")
    p.add_argument("--models", type=_comma_list(str), metavar="M[,M…]",
                   help="run only the jobs of these models (as the config names them) this time")
    p.add_argument("--device", metavar="cpu|cuda|cuda:N|auto",
                   help="compress and train the jobs there (default cpu); on a GPU nothing is timed: the speed-ups "
                        "come from --remeasure-latency on the CPU, and teachers are measured on the CPU")
    p.add_argument("--merge", nargs="+", metavar="RESULTS.jsonl",
                   help="copy in the jobs this sweep lacks that these results files of the same sweep finished "
                        "(e.g. its shards run on other machines), if they measured the same teachers to the same "
                        "accuracy; their speed-ups wait for --remeasure-latency here")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("methods", help="the registered methods and the parts that compose others; with a name, "
                                       "the options that method's parts take")
    p.add_argument("method", nargs="?", help="a method (registered or composed): list what --option can set")
    p.add_argument("--json", action="store_true", help="print them as JSON")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("eval", help="accuracy, MACs, params and latency of a model")
    model_args(p)
    device_arg(p, "where the model is evaluated and timed")
    p.add_argument("--split", default="test", help="the dataset split to evaluate on (default test)")
    p.add_argument("--limit", "--eval-limit", type=int,  # --eval-limit as in prune and curve
                   help="evaluate on a fixed random subset of this many images")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--onnx", action="store_true", help="also time the model under onnxruntime (exported to a "
                                                        "temporary file; CPU, the same threads)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", help="saved results (prune --out folders) side by side: method, target, samples, "
                                       "scores, MACs, params, speed-up and time, as each recorded them")
    p.add_argument("results", nargs="+", metavar="RESULT", help="folders written by fewprune prune")
    p.add_argument("--out", help="also write the table as markdown to this file")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="train a zoo teacher from its recipe (resumable)")
    p.add_argument("recipe", help="e.g. resnet56-fmnist")
    p.add_argument("--out", help="run folder (checkpoint, weights, manifest); default runs/train/RECIPE")
    p.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    p.add_argument("--install", action="store_true", help="copy the result into the package's zoo")
    device_arg(p, "where the teacher trains (not --asca)")
    p.add_argument("--asca", metavar="KIND=FRACTION",
                   help="ASCA from scratch: learn gates and weights together towards this target (e.g. macs=0.5), "
                        "then remove the closed channels; no fine-tuning")
    p.add_argument("--gate-price", choices=PRICES, default=PRICES[0],
                   help="with --asca: what the gates' cost term charges a channel: its share of the target's cost "
                        "(the default), or the same for every channel (keeps the residual streams from collapsing "
                        "when learning from scratch; see benchmarks/asca-scratch.md)")
    p.add_argument("--force", action="store_true", help="with --asca: replace an existing --out folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("zoo", help="the shipped teachers")
    p.add_argument("action", choices=["list", "report"], nargs="?", default="list")
    p.add_argument("--out", help="for report: write the markdown here")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("explain", help="render the evidence behind a pruning decision as PNG figures")
    model_args(p)
    p.add_argument("--concept-masks", action="store_true",
                   help="each block's input/output concept masks and their divergence (CMa)")
    p.add_argument("--lrp", action="store_true",
                   help="per-image LRP heatmaps and the most/least relevant channels of --layer")
    p.add_argument("--layer", help="for --lrp: the layer whose channels to rank (default: the last convolution)")
    p.add_argument("--images", type=int, default=4, help="test images to show (default 4)")
    p.add_argument("--theta", type=float, default=0.2, help="concept-mask top ratio θ (default 0.2)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, help="output folder for the PNGs")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("curve", help="accuracy vs fraction of channels removed per method, with each curve's AUC")
    model_args(p)
    p.add_argument("--methods", default="l1,taylor,lrp", help="comma-separated methods (default l1,taylor,lrp)")
    p.add_argument("--fractions", default="0:0.9:0.1", help="start:stop:step (inclusive) or a list (default 0:0.9:0.1)")
    p.add_argument("--samples", type=int, default=100, help="training images to use (default 100)")
    p.add_argument("--per-class", type=int, help="instead of --samples: this many images of every class")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--eval-limit", type=int, help="evaluate on a fixed subset of this many test images")
    p.add_argument("--out", required=True, help="output folder (curve.md, curve.png, curve.json)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_curve)

    p = sub.add_parser("check", help="prune a model (random weights), check pruned == masked teacher, MACs and "
                                      "save → load; --torchvision: every torchvision classifier, as a report")
    p.add_argument("models", nargs="*", help="model specs (with --torchvision: torchvision names to limit to)")
    p.add_argument("--torchvision", action="store_true", help="check torchvision's classifiers (resumable)")
    p.add_argument("--methods", action="store_true",
                   help="run every method on every model family (or the models named) with training cut short: "
                        "ok, refused with a reason, or failed (resumable)")
    p.add_argument("--method", action="append", help="with --methods: only this method (repeatable)")
    p.add_argument("--input-shape", help="C,H,W of the random input (default 3,224,224; with --methods 1,28,28)")
    p.add_argument("--macs", type=float, default=0.3, help="fraction of MACs L1 removes (default 0.3)")
    p.add_argument("--results", help="with --torchvision / --methods: JSON lines kept between runs "
                                     "(default benchmarks/results/torchvision.jsonl / methods.jsonl)")
    p.add_argument("--out", help="write the markdown report here")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --torchvision / --methods: check what did not pass again")
    p.add_argument("--recheck", action="store_true",
                   help="with --torchvision: check the named models again even if they passed")
    p.add_argument("--report-only", action="store_true",
                   help="with --torchvision / --methods: only rewrite --out from the results")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo", help="the embedded default job: halve a shipped teacher's MACs with 50 samples "
                                     "(cma+mir-blocks, blocks dropped as needed, CPU-aligned widths)")
    p.add_argument("--teacher", help="zoo name (default resnet56-fmnist)")
    p.add_argument("--eval-limit", type=int, help="evaluate on this many test images")
    p.add_argument("--out", default="runs/demo", help="output folder (replaced on every run)")
    device_arg(p, "where the demo compresses, evaluates and times")
    p.set_defaults(func=cmd_demo)
    return parser


def default_dataset(model: str | None) -> tuple[str, str | None]:
    """The dataset a model spec comes with: a zoo teacher's (its manifest names it), a pruning result's (the one
    its report was evaluated on, with the ``--data-root`` it was read from, if one was given); else fashion-mnist."""
    if model and model.startswith("zoo:") and model[4:] in zoo.list():
        return zoo.manifest(model[4:])["dataset"], None
    report = Path(model or "") / "report.json"
    if model and report.is_file():
        evaluation = json.loads(report.read_text()).get("evaluation", {})
        if evaluation.get("dataset"):
            return evaluation["dataset"], evaluation.get("data_root")
    return "fashion-mnist", None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if hasattr(args, "data") and args.data is None:
        args.data, recorded_root = default_dataset(getattr(args, "model", None))
        if recorded_root and getattr(args, "data_root", "unset") is None:
            args.data_root = recorded_root
            print(f"fewprune: note: reading {args.data} from {recorded_root}, as {args.model} was "
                  "(--data-root changes it)", file=sys.stderr)
    from . import plugins

    try:
        plugins.from_environment()
        plugins.load_all(args.plugin)
        return args.func(args)
    except (data.DatasetNotFound, FileNotFoundError, FileExistsError, KeyError, ValueError, FloatingPointError,
            plugins.PluginError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"fewprune: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fewprune: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Which methods run on which architectures: every registered method on every model family, end to end.

``check_method`` compresses a model with random weights (nothing is downloaded)
by one method, with every training loop cut to a few iterations (this checks
that the method *runs*, not how well), then saves and reloads the student and
compares its outputs bit for bit. An outcome is one of three:

- ``ok``: compressed, saved and reloaded;
- ``refused``: fewprune said why it cannot (an error raised on purpose, e.g.
  "CifarVGG has no shape-preserving residual block");
- ``failed``: anything else — a crash inside torch or an implicit error in
  fewprune. Every such row is a bug.

``method_coverage_markdown`` renders the matrix committed as ``benchmarks/methods.md``.
"""

from __future__ import annotations

import gc
import inspect
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch

from .coverage import latest_rows, randomise_untrained
from .runner import append_result, read_results

# Built-in families and torchvision's most used CNNs, at Fashion-MNIST's shape: MobileNetV3 for its head of two
# layers, LR-ASPP for a dense prediction (segmentation).
MODELS = ["resnet20", "mobilenetv2", "vgg16", "vit", "torchvision:resnet18", "torchvision:mobilenet_v2",
          "torchvision:mobilenet_v3_small", "torchvision:lraspp_mobilenet_v3_large"]
# Errors fewprune raises on purpose to refuse an input; any other exception is a failure.
_REFUSALS = (ValueError, NotImplementedError)


def method_names() -> list[str]:
    """The registered methods plus compositions users are pointed to (chained recoveries, another augmentation)."""
    from .. import methods

    return methods.names() + ["l1+fskd+mir", "l1+cd", "block-residual+mir", "taylor+bn", "l2@global+bn", "cma+nomix"]


def _shortened(options: dict, function, iterations: int) -> dict:
    """``options`` with the function's training loop (an ``iterations`` count, else a ``schedule``) cut short.

    A schedule keeps the rest of its settings (the recipe's, or the function's visible default); a function that
    picks its schedule inside gets ``Schedule()``'s.
    """
    from ..recovery import Schedule

    parameters = {name: p for name, p in inspect.signature(function).parameters.items()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}  # asca's **schedule is not a Schedule
    if "iterations" in parameters and "schedule" not in options:  # practise's length; asca's **schedule's
        return {**options, "iterations": iterations}
    if "schedule" in parameters:
        default = parameters["schedule"].default
        base = options.get("schedule") or (default if isinstance(default, Schedule) else Schedule())
        return {**options, "schedule": replace(base, iterations=iterations, batch_size=8)}
    return options


def quick(method: str, iterations: int = 3):
    """The method's recipe with its criterion's and recoveries' training loops cut to ``iterations``."""
    from .. import methods
    from ..criteria import criteria

    recipe = methods.with_schedule(method, iterations=iterations, batch_size=8)  # composes unregistered names
    criterion_options = _shortened(recipe.criterion_options, criteria.get(recipe.criterion), iterations)
    return replace(recipe, criterion_options=criterion_options)


def deliberate_refusal(error: BaseException) -> bool:
    """Raised by a ``raise`` statement in fewprune itself, of a refusal type (not torch's ValueErrors)."""
    if not isinstance(error, _REFUSALS):
        return False
    package = Path(__file__).resolve().parents[1]
    innermost = Path(traceback.extract_tb(error.__traceback__)[-1].filename).resolve()
    return package in innermost.parents


def check_method(spec: str, method: str, input_shape: tuple[int, int, int] = (1, 28, 28), samples: int = 20,
                 macs: float = 0.4, blocks: int = 2, iterations: int = 3, seed: int = 0) -> dict:
    """Compress ``spec`` (random weights) with ``method`` cut to ``iterations``, save, reload and compare.

    A channel method aims at ``macs`` of MACs removed, a block method at ``blocks`` blocks.
    Returns a row with ``status`` ok / refused / failed, the MACs removed and the seconds taken.
    """
    from .. import api, result_files
    from ..allocation import Target
    from ..models import build
    from ..models.outputs import all_outputs, identical, main_output

    recipe = quick(method, iterations)
    target = Target(blocks=blocks) if recipe.granularity == "blocks" else Target(macs=macs)
    row: dict = {"model": spec, "method": method, "input_shape": list(input_shape), "samples": samples,
                 "target": target.to_dict(), "iterations": iterations, "seed": seed,
                 "threads": torch.get_num_threads()}
    start = time.perf_counter()

    def builder():
        return build(spec, num_classes=10, in_channels=input_shape[0], image_size=input_shape[1])

    try:
        torch.manual_seed(seed)
        teacher = randomise_untrained(builder(), seed).eval()
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(samples, *input_shape, generator=gen)
        with torch.no_grad():  # labels as the model predicts: a class per image, or a mask for a dense prediction
            size = main_output(teacher(x[:1])).shape[2:]
        y = torch.randint(0, 10, (samples, *size), generator=gen) if size else torch.arange(samples) % 10
        result = api.compress(teacher, (x, y), method=recipe, target=target, seed=seed, progress=False)
        row.update(macs_reduction=result.report["macs_reduction"], params_reduction=result.report["params_reduction"],
                   dropped_blocks=len(result.plan.dropped_blocks))
        with torch.no_grad():
            logits = all_outputs(result.student.eval()(x[:4]))
        with tempfile.TemporaryDirectory() as tmp:
            result_files.save(result, Path(tmp) / "student")
            reloaded = result_files.load(Path(tmp) / "student", builder)
        with torch.no_grad():
            again = all_outputs(reloaded(x[:4]))
        if not identical(again, logits):
            raise AssertionError("the reloaded student's outputs differ from the saved student's")
        row["status"] = "ok"
    except Exception as error:  # noqa: BLE001 — every outcome is the result being recorded
        row.update(status="refused" if deliberate_refusal(error) else "failed",
                   error=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}" if str(error)
                   else type(error).__name__)
    row["seconds"] = round(time.perf_counter() - start, 2)
    gc.collect()
    return row


def check_methods(results: str | Path, models: list[str] | None = None, methods: list[str] | None = None,
                  retry: bool = False, log=print, input_shape: tuple[int, int, int] = (1, 28, 28)) -> list[dict]:
    """``check_method`` for every (model, method) pair not yet in ``results`` (one JSON line each; resumable).

    With ``retry`` the pairs that did not pass are checked again (the latest row counts). ``input_shape``
    suits the built-in families; a model that downsamples 32× (VGG, ConvNeXt) needs at least 32×32.
    """
    from ..metrics import versions

    done = {(r["model"], r["method"]) for r in latest_pairs(read_results(results)) if r["status"] == "ok" or not retry}
    todo = [(m, n) for m in (models or MODELS) for n in (methods or method_names()) if (m, n) not in done]
    for i, (model, method) in enumerate(todo, 1):
        row = check_method(model, method, input_shape=input_shape)
        row["versions"] = versions()
        append_result(results, row)
        log(f"[{i}/{len(todo)}] {model} {method}: {row['status']} ({row['seconds']:.0f} s)"
            + (f" {row['error']}" if row["status"] != "ok" else ""))
    return latest_pairs(read_results(results))


def latest_pairs(rows: list[dict]) -> list[dict]:
    """The last row of each (model, method) pair, in the order pairs were first checked."""
    return latest_rows(rows, key=lambda row: (row["model"], row["method"]))


def method_coverage_markdown(rows: list[dict], command: str, unchecked: int = 0) -> str:
    """Methods × models: MACs removed (or blocks dropped) where a method ran, the reason where it refused.

    ``unchecked``: how many pairs a run has not reached yet (said, so a partial report reads as one).
    """
    models = list(dict.fromkeys(r["model"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["model"], r["method"]): r for r in rows}
    notes: list[str] = []

    def show(r: dict | None) -> str:
        if r is None:
            return "–"
        if r["status"] == "ok":
            done = (f"{r['dropped_blocks']} blocks" if "blocks" in r["target"]
                    else f"−{100 * r['macs_reduction']:.0f}% MACs")
            return f"✓ {done}, {r['seconds']:.0f} s"
        if r["error"] not in notes:
            notes.append(r["error"])
        mark = "refused" if r["status"] == "refused" else "**FAILED**"
        return f"{mark} [{notes.index(r['error']) + 1}]"

    ok = sum(r["status"] == "ok" for r in rows)
    refused = sum(r["status"] == "refused" for r in rows)
    first = rows[0]
    shapes = {r["model"]: "×".join(map(str, r["input_shape"])) for r in rows}  # named in the columns if they differ
    lines = [
        "# Method coverage: every method on every model family", "",
        f"Regenerate: `{command}`", "",
        f"**{ok} of {len(rows)} pairs run**, {refused} are refused with a reason, "
        f"{len(rows) - ok - refused} fail. Each pair compresses the model with random weights and random BN "
        f"statistics from {first['samples']} random samples of shape "
        f"{shapes[first['model']] if len(set(shapes.values())) == 1 else 'C×H×W (each column names it)'} "
        f"(channel methods to −{100 * first['target'].get('macs', 0.4):.0f}% MACs, block methods by 2 blocks), every "
        f"training loop cut to {first['iterations']} iterations — this checks that a method runs end to end, not "
        "how well — then saves, reloads and compares the student's outputs bit for bit. Time in seconds on "
        f"{first.get('threads', '?')} CPU thread(s), with other jobs sharing the machine as it happened."
        + (f" **Partial: {unchecked} pairs not checked yet** (–)." if unchecked else ""), "",
        "| method | " + " | ".join(m.removeprefix("torchvision:") + (" (tv)" if m.startswith("torchvision:") else "")
                                   + (f", {shapes[m]}" if len(set(shapes.values())) > 1 else "")
                                   for m in models) + " |",
        "| --- | " + " | ".join("---" for _ in models) + " |",
    ]
    for method in methods:
        lines.append(f"| `{method}` | " + " | ".join(show(cell.get((m, method))) for m in models) + " |")
    if notes:
        lines += [""] + [f"[{i}] {note.replace('|', '/')}" + "  " for i, note in enumerate(notes, 1)]
    versions = first.get("versions", {})
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    return "\n".join(lines) + "\n"

"""A compression's result and its files: ``Result`` (what :func:`fewprune.compress` returns), ``save`` (plan.json,
student.safetensors, report.json, report.md, result.png, few_shot.json), ``load`` (architecture + plan + weights, no
pickle) and ``export_onnx``."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .devices import on_device
from .files import absolute_spec
from .metrics import threads_text
from .structure import Plan


@dataclass
class Result:
    """What :func:`fewprune.compress` returns: the student, the plan that made it from the teacher, the report of
    what was measured, and which samples were used."""

    student: nn.Module
    plan: Plan
    report: dict = field(default_factory=dict)
    few_shot: dict = field(default_factory=dict)


def per_class_changes(evaluation: dict) -> list[tuple[str, float, float]]:
    """``(class, teacher accuracy, student accuracy)`` for each class both were judged on, largest drop first; empty
    unless the evaluation names its ``classes`` and has per-class accuracy for both (a classifier's)."""
    classes = evaluation.get("classes")
    teacher, student = evaluation.get("teacher") or {}, evaluation.get("student") or {}
    if not classes or student.get("per_pixel") or not teacher.get("per_class") or not student.get("per_class"):
        return []
    pairs = [(name, t, s) for name, t, s in zip(classes, teacher["per_class"], student["per_class"], strict=False)
             if t is not None and s is not None]
    return sorted(pairs, key=lambda pair: pair[2] - pair[1])


def _target_text(target: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in target.items())


def _report_markdown(result: Result) -> str:
    r = result.report
    lines = [
        f"# fewprune result: {r['method']} ("
        + (f"{_target_text(r['requested_target'])} → " if "requested_target" in r else "")
        + f"{_target_text(r['target'])})",
        "",
        f"- seed {r['seed']}, {r['samples']['count']} samples"
        + (f" from {r['samples'].get('dataset')} (indices hash {r['samples'].get('indices_hash')})"
           if r["samples"].get("dataset") else ""),
        f"- MACs {r['teacher']['macs'] / 1e6:.2f} M → {r['student']['macs'] / 1e6:.2f} M "
        f"(-{100 * r['macs_reduction']:.1f}%)",
        f"- params {r['teacher']['params'] / 1e6:.3f} M → {r['student']['params'] / 1e6:.3f} M "
        f"(-{100 * r['params_reduction']:.1f}%)",
        f"- compression wall time {r['wall_seconds']:.1f} s on {threads_text(r['threads'])}"
        + (f" (resumed a shared allocation path at {100 * shared['resumed_at']:.1f}% removed: +"
           f"{shared['shared_seconds']:.1f} s standing alone)" if (shared := r.get("allocation", {}).get("shared_path"))
           else ""),
    ]
    if "speedup_search" in r:
        from .allocation.speedup import describe_search

        lines.append(f"- {describe_search(r['speedup_search'])}")
    if "evaluation" in r:
        split = "test" if r["evaluation"].get("split", "test") == "test" else "held-out"
        for who in ("teacher", "student"):
            e = r["evaluation"].get(who)
            if e:
                per = "per-pixel" if e.get("per_pixel") else "top-1"
                figure = (f"{per} agreement with the teacher {100 * e['agreement']:.2f}%" if "agreement" in e
                          else f"{split} accuracy {100 * e['accuracy']:.2f}%" + (
                              f", mean IoU {100 * e['mean_iou']:.2f}%" if "mean_iou" in e else ""))
                lines.append(f"- {who} {figure} on {e['samples']} images")
        changes = per_class_changes(r["evaluation"])
        if changes:
            lines += ["", f"Per class ({split} accuracy, %), largest drop first:", "",
                      "| class | teacher | student | change |", "| --- | --- | --- | --- |"]
            lines += [f"| {name} | {100 * t:.2f} | {100 * s:.2f} | {100 * (s - t):+.2f} |" for name, t, s in changes]
    lines += ["", "![widths and recovery](result.png)"]
    lines += ["", "| group | kind | width before | width after |", "| --- | --- | --- | --- |"]
    lines += [f"| {g} | {k} | {a} | {b} |" for g, k, a, b in result.plan.summary()]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items())]
    return "\n".join(lines) + "\n"


def save(result: Result, directory: str | Path, force: bool = False, onnx_input: torch.Tensor | None = None,
         architecture: str | None = None) -> Path:
    """Write plan.json, student.safetensors, report.json, report.md, result.png (widths before and after, the
    recovery's loss curves) and few_shot.json atomically.

    ``architecture`` names the pruned model's architecture as a spec (``"zoo:NAME"``, ``"torchvision:NAME"``,
    ``"path/to/file.py:factory"``; a file's path is recorded absolute): the folder then is a model spec as a
    ``fewprune prune`` result is, so :func:`load` needs no ``architecture=`` and ``fewprune eval --model FOLDER``
    rebuilds it, reading an image folder as the samples were read (when they came from one of fewprune's
    datasets).

    With ``onnx_input`` (an example batch) the student is also exported to
    student.onnx and checked against onnxruntime. A method that learned gates
    (ASCA) also gets gates.png, its gate-learning curves and widths.

    The files are written into a temporary sibling folder that is renamed into
    place only when complete, so an interruption leaves no half-written result.
    An existing ``directory`` is replaced only with ``force``, and only if fewprune wrote it (or it is empty).
    """
    from safetensors.torch import save_file

    from .files import output_folder

    report = result.report
    if architecture is not None:
        if not isinstance(architecture, str):
            raise TypeError(f"architecture names the model as a spec (zoo:NAME, torchvision:NAME or "
                            f"path/to/file.py:factory), not a {type(architecture).__name__}: a spec can be recorded")
        convention = report.get("samples", {}).get("input")
        report = {**report, "teacher_model": {"spec": absolute_spec(architecture), "adapt": False,
                                              **({"input": convention} if convention else {})}}
    target = Path(directory)
    with output_folder(target, force, out_flag="output", force_flag="--force / force=True") as staging:
        (staging / "plan.json").write_text(result.plan.to_json() + "\n")
        state = {k: v.detach().cpu().contiguous().clone() for k, v in result.student.state_dict().items()}
        save_file(state, str(staging / "student.safetensors"))
        (staging / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (staging / "report.md").write_text(_report_markdown(result))
        (staging / "few_shot.json").write_text(json.dumps(result.few_shot, indent=1) + "\n")
        from .bench.plots import plot_gate_learning, plot_result

        plot_result(result.plan, result.report.get("recovery"), staging / "result.png")
        gates = result.report.get("criterion", {}).get("gates")
        if gates:  # learned-gate methods (ASCA): how the gates closed
            plot_gate_learning(gates, staging / "gates.png")
        if onnx_input is not None:
            export_onnx(result.student, staging / "student.onnx", onnx_input)
    return target


def recorded_architecture(directory: str | Path, num_classes: int | None = None, in_channels: int | None = None,
                          image_size: int | None = None) -> Callable[[], nn.Module]:
    """A builder of the architecture a ``fewprune prune`` result names (its report's ``teacher_model``): the
    teacher's spec, shaped for the input it was pruned with unless ``num_classes`` / ``in_channels`` /
    ``image_size`` say otherwise."""
    from .models import build

    report = Path(directory) / "report.json"
    teacher = (json.loads(report.read_text()).get("teacher_model") if report.is_file() else None) or {}
    if not teacher.get("spec"):
        raise ValueError(f"{directory} does not say which architecture it pruned (written by Python, or by an older "
                         "fewprune): pass the architecture, e.g. fewprune.load(directory, architecture=...)")
    recorded = teacher.get("input") or {}
    classes = recorded.get("classes")
    return lambda: build(teacher["spec"], num_classes=num_classes or (len(classes) if classes else None),
                         in_channels=in_channels or recorded.get("channels", 3),
                         image_size=image_size or recorded.get("image_size", 32), adapt=teacher.get("adapt", False))


def load(directory: str | Path, architecture: nn.Module | str | Callable[[], nn.Module] | None = None) -> nn.Module:
    """Rebuild a saved student: the untrained ``architecture`` + plan + weights.

    ``architecture`` is a module (copied: the caller's stays as it was), a
    zoo/model spec, or a function that builds a fresh module (pruned in place:
    for the largest models, one full-size copy fewer); by default, the one a
    ``fewprune prune`` result names (:func:`recorded_architecture`). No
    pickle is involved: the plan is JSON and the weights are safetensors.
    """
    from safetensors.torch import load_file

    from .models import build, zoo
    from .models.weights import load_state

    directory = Path(directory)
    if not (directory / "plan.json").is_file() or not (directory / "student.safetensors").is_file():
        raise FileNotFoundError(f"{directory} is not a fewprune result (it needs plan.json and student.safetensors, "
                                "as fewprune.save and `fewprune prune --out` write them)")
    if architecture is None:
        architecture = recorded_architecture(directory)
    if isinstance(architecture, str):
        name = architecture.removeprefix("zoo:")
        model = (zoo.architecture(name) if name in zoo.list() else build(architecture)).eval()
    elif isinstance(architecture, nn.Module):
        model = copy.deepcopy(architecture).eval()  # the caller's module stays as it was
    else:
        model = architecture().eval()
    plan = Plan.read(directory / "plan.json")
    plan.apply(model)
    missing, unexpected = load_state(model, load_file(str(directory / "student.safetensors")), strict=False)
    if missing or unexpected:  # the plan fitted by name, but the architecture is another (resnet56 for resnet20)
        report = directory / "report.json"
        spec = (json.loads(report.read_text()).get("teacher_model") or {}).get("spec") if report.is_file() else None
        raise ValueError(f"the student in {directory} does not fit the architecture given ({type(model).__name__}): "
                         f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}, unexpected "
                         f"{unexpected[:3]}{'…' if len(unexpected) > 3 else ''}"
                         + (f"; it was pruned from {spec}" if spec else "; pass the architecture it was pruned from"))
    return model.eval()


def export_onnx(model: nn.Module, path: str | Path, example_input: torch.Tensor, check: bool = True,
                atol: float = 1e-4) -> Path:
    """Export ``model`` to ONNX (dynamic batch) and, with ``check``, compare onnxruntime's outputs to torch's."""
    path = Path(path)
    if not on_device(model, torch.device("cpu")):  # ONNX is exported and checked on the CPU: a copy goes there
        model = copy.deepcopy(model).cpu()
    model, example_input = model.eval(), example_input.cpu()
    import warnings

    from .files import atomic_path

    with warnings.catch_warnings(), atomic_path(path) as tmp:
        # The TorchScript exporter needs no onnxscript and handles every model fewprune prunes.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example_input,), str(tmp), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    if check:
        import numpy as np
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        probe = torch.cat([example_input, torch.randn_like(example_input)])
        expected = model(probe).detach().numpy()
        got = session.run(None, {"images": probe.numpy()})[0]
        if not np.allclose(expected, got, atol=atol, rtol=1e-3):
            raise AssertionError(f"onnxruntime disagrees with torch by {np.abs(expected - got).max():.3g}")
    return path

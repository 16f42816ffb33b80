"""Which models fewprune prunes, saves and reloads: one end-to-end check per model.

``check_model`` builds a model with random weights (nothing is downloaded),
gives its normalisation layers non-trivial statistics so a masking mistake
cannot hide behind zeros, compresses it with ``compress`` (L1, no recovery)
and checks the three invariants a user relies on: the physically pruned
student computes what the teacher computes with the removed units zeroed, its
MACs equal the analytic cost model's, and ``save`` → ``load`` reproduces its
outputs bit for bit. ``check_torchvision`` runs it over every torchvision
classification model, resumably (one JSON line per model), and
``coverage_markdown`` renders the table committed as ``benchmarks/torchvision.md``.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from .runner import append_result, read_results


def randomise_untrained(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics and affine parameters for every BatchNorm, and random weights where a layer was
    initialised to zero (torchvision's ViT heads), in place: a freshly built model's outputs then depend on its
    input, so comparing them can fail."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)) and not m.weight.any():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (1 / m.weight[0].numel()) ** 0.5)
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def check_model(spec: str, input_shape: tuple[int, int, int] = (3, 224, 224), macs: float = 0.3,
                num_classes: int = 10, seed: int = 0) -> dict:
    """Compress ``spec`` by ``macs`` with L1 and check pruned == masked, MACs, and save → load.

    Returns a row: ``status`` "ok", or "fail" with the ``stage`` that failed
    and the ``error``; the widths, MACs and params before and after; the
    largest logit difference to the zero-masked teacher; seconds taken.
    """
    from .. import api, result_files
    from ..allocation import Target
    from ..metrics import versions
    from ..models import build
    from ..models.outputs import all_outputs, identical
    from ..structure import PruningSpace, masked_copy

    row: dict = {"model": spec, "input_shape": list(input_shape), "target": {"macs": macs}, "seed": seed}
    start = time.perf_counter()
    stage = "build"
    try:
        torch.manual_seed(seed)
        teacher = randomise_untrained(build(spec, num_classes=num_classes, in_channels=input_shape[0],
                                            image_size=input_shape[1]), seed).eval()
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(2, *input_shape, generator=gen)
        stage = "compress"  # L1 reads no label: none given, so a segmentation model needs no masks
        result = api.compress(teacher, x, method="l1", target=Target(macs=macs), seed=seed, progress=False)
        student = result.student.eval()
        report = result.report  # compress counted both models on the real modules
        row.update(groups=len(result.plan.kinds), pruned_groups=len(result.plan.removed),
                   macs_before=report["teacher"]["macs"], macs_after=report["student"]["macs"],
                   params_before=report["teacher"]["params"], params_after=report["student"]["params"],
                   macs_reduction=report["macs_reduction"],
                   predicted_macs_reduction=report["predicted_macs_reduction"])
        stage = "pruned == masked"
        space = PruningSpace(teacher, x[:1])
        masked = masked_copy(teacher, result.plan, space.groups).eval()
        with torch.no_grad():  # every output: a segmentation model's dict too
            logits, expected = all_outputs(student(x)), all_outputs(masked(x))
        del masked, space, teacher  # the largest torchvision models need every copy's memory back
        gc.collect()
        if not (expected[0][0] != expected[0][1]).any():
            raise AssertionError("the teacher gives both random inputs the same outputs: comparing them proves nothing")
        shapes = [tuple(t.shape) for t in logits], [tuple(t.shape) for t in expected]
        if shapes[0] != shapes[1]:
            raise AssertionError(f"the pruned model outputs {shapes[0]}, the teacher {shapes[1]}: "
                                 f"its output layer was pruned")
        row["max_logit_difference"] = max(float((a - b).abs().max()) for a, b in zip(logits, expected, strict=True))
        scale = max(float(t.abs().max()) for t in expected) or 1.0
        row["logit_scale"] = scale
        if not all(torch.allclose(a, b, atol=1e-4 * max(scale, 1.0), rtol=1e-3)
                   for a, b in zip(logits, expected, strict=True)):
            raise AssertionError(f"the pruned model differs from the zero-masked teacher by "
                                 f"{row['max_logit_difference']:.3g} (logits up to {scale:.3g})")
        stage = "MACs vs cost model"
        if abs(row["macs_reduction"] - row["predicted_macs_reduction"]) > 1e-6:
            raise AssertionError(f"counted {row['macs_reduction']:.6f} of MACs removed, the cost model predicted "
                                 f"{row['predicted_macs_reduction']:.6f}")
        stage = "save → load"
        with tempfile.TemporaryDirectory() as tmp:
            result_files.save(result, Path(tmp) / "student")
            del result, student  # only their outputs are compared from here: the reload gets their memory
            gc.collect()
            reloaded = result_files.load(Path(tmp) / "student", lambda: build(
                spec, num_classes=num_classes, in_channels=input_shape[0], image_size=input_shape[1]))
        with torch.no_grad():
            again = all_outputs(reloaded(x))
        if not identical(again, logits):
            raise AssertionError("the reloaded student's outputs differ from the saved student's")
        row["status"] = "ok"
    except Exception as error:  # noqa: BLE001 — every failure is the result being recorded
        from .method_coverage import deliberate_refusal

        # fewprune refusing with its reason (a target out of reach, a model it cannot trace) is not a bug
        refused = stage == "compress" and deliberate_refusal(error)
        row.update(status="refused" if refused else "fail", stage=stage,
                   error=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
                   if str(error) else type(error).__name__)
    row["seconds"] = round(time.perf_counter() - start, 2)
    row["versions"] = versions()
    gc.collect()
    return row


def torchvision_models() -> list[str]:
    from torchvision import models as tvm

    return sorted(tvm.list_models(module=tvm))


def check_torchvision(results: str | Path, names: list[str] | None = None, input_shape=(3, 224, 224),
                      macs: float = 0.3, retry_failed: bool = False, log=print, recheck: bool = False) -> list[dict]:
    """``check_model`` for every torchvision classification model not yet checked in ``results``.

    ``results`` holds one JSON line per check; with ``retry_failed`` the models
    that failed are checked again, with ``recheck`` every named model is, and a
    model's latest row is the one that counts (see :func:`latest_rows`).
    """
    latest = latest_rows(read_results(results))
    done = set() if recheck else {r["model"] for r in latest if r["status"] == "ok" or not retry_failed}
    todo = [n for n in (names or torchvision_models()) if f"torchvision:{n}" not in done]
    for i, name in enumerate(todo, 1):
        row = check_model(f"torchvision:{name}", input_shape, macs)
        append_result(results, row)
        log(f"[{i}/{len(todo)}] {name}: {row['status']}" + (f" ({row['stage']}: {row['error']})"
                                                            if row["status"] != "ok" else
                                                            f", {100 * row['macs_reduction']:.1f}% MACs removed, "
                                                            f"{row['seconds']:.0f} s"))
    return latest_rows(read_results(results))


def latest_rows(rows: list[dict], key=lambda row: row["model"]) -> list[dict]:
    """The last row of each model (or of each ``key(row)``), in the order they were first checked."""
    latest: dict = {}
    for row in rows:
        latest[key(row)] = row
    return list(latest.values())


def coverage_markdown(rows: list[dict], command: str, unchecked: list[str] = (),
                      what: str = "every torchvision classifier") -> str:
    """A table of every checked model: widths pruned, MACs and params before → after, invariants, time.

    ``unchecked`` names the models a run has not reached yet (listed, so a partial report says so).
    """
    ok = [r for r in rows if r["status"] == "ok"]
    refused = [r for r in rows if r["status"] == "refused"]
    lines = [
        f"# Model coverage: prune, check, save and reload {what}", "",
        f"Regenerate: `{command}`", "",
        f"**{len(ok)} of {len(rows)} models** pass: L1 removes "
        f"{100 * rows[0]['target']['macs']:.0f}% of MACs (no recovery, random weights with random BN statistics, "
        f"input {'×'.join(map(str, rows[0]['input_shape']))}), the pruned model equals the zero-masked teacher, its "
        "counted MACs equal the cost model's, and save → load gives bit-identical outputs"
        + (f"; {len(refused)} are refused with the reason fewprune gives" if refused else "") + ".", "",
        "Pruned and masked outputs are equal when every difference is within 1e-4 × max(1, the largest |logit|) "
        "+ 1e-3 × |logit|: float sums taken in another order differ in proportion to the values summed, and random "
        "weights with random BN statistics blow some models' logits up to very large values (inception_v3's). "
        "The max logit diff column is absolute; where a row records it, the largest |logit| follows in brackets.", "",
        "| model | status | groups pruned | MACs before → after | params before → after | max logit diff | s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: r["model"]):
        name = r["model"].removeprefix("torchvision:")
        if r["status"] == "ok":
            lines.append(f"| {name} | ok | {r['pruned_groups']} of {r['groups']} | "
                         f"{r['macs_before'] / 1e9:.3f} G → {r['macs_after'] / 1e9:.3f} G | "
                         f"{r['params_before'] / 1e6:.2f} M → {r['params_after'] / 1e6:.2f} M | "
                         f"{r['max_logit_difference']:.1e}"
                         + (f" (of {r['logit_scale']:.1e})" if "logit_scale" in r else "") + f" | {r['seconds']:.0f} |")
        else:
            error = r["error"].replace("|", "\\|")
            verdict = f"refused at {r['stage']}" if r["status"] == "refused" else f"**fails at {r['stage']}**"
            lines.append(f"| {name} | {verdict}: {error} | | | | | {r['seconds']:.0f} |")
    if unchecked:
        lines += ["", f"Not checked yet ({len(unchecked)}): " + ", ".join(unchecked) + "."]
    versions = rows[0].get("versions", {})
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    return "\n".join(lines) + "\n"

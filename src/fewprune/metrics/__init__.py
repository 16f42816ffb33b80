"""Accuracy, MACs, parameters, latency, and the versions a report must record."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
from pathlib import Path

from .accuracy import agreement, evaluate, mean_iou, predict
from .complexity import macs, params
from .latency import latency, onnx_latency, paired_speedup


def threads_text(count, noun: str = "thread") -> str:
    """How reports name the CPU threads a figure took: 1 thread, 2 threads (? threads when unknown)."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def versions() -> dict:
    """Versions of the libraries that shape a result."""
    import numpy
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    for name, dist in (("torchvision", "torchvision"), ("torch_pruning", "torch-pruning"), ("zennit", "zennit"),
                       ("timm", "timm")):  # timm where installed: it builds timm:NAME models
        try:
            out[name] = importlib.metadata.version(dist)  # zennit has no __version__ attribute
        except importlib.metadata.PackageNotFoundError:
            pass
    from .. import __version__

    out["fewprune"] = __version__
    out["fewprune_source"] = loaded_source()
    return out


PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def source_digest(root: Path = PACKAGE_ROOT) -> str:
    """A digest of fewprune's source files as they are on disk now (each ``.py`` file's path and bytes, sha256, 12
    hex digits): equal digests, the same code, whether it runs from a checkout or an installed wheel."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@functools.cache
def loaded_source() -> str:
    """:func:`source_digest` the first time this process asked: the code it runs (a file edited later is not
    reloaded), which every result records as ``versions["fewprune_source"]``."""
    return source_digest()


def measure(model, dataset, example, latency_batches=(1, 64), progress: bool = True,
            reference=None) -> dict:
    """Accuracy (and per class) on ``dataset`` plus MACs, params and latency at each batch size: one table column.

    With ``reference`` (a teacher's predicted classes on ``dataset``), top-1
    agreement with them replaces accuracy: for unlabelled images. ``dataset=None`` measures the structure
    alone. ``latency_batches=()`` skips timing (on a busy machine timings mean nothing).
    """
    result = ({} if dataset is None else evaluate(model, dataset, progress=progress) if reference is None
              else agreement(model, dataset, reference, progress=progress))
    result["macs"] = macs(model, example[:1])
    result["params"] = params(model)
    if latency_batches:
        result["latency"] = {f"batch{b}": latency(model, example[:1].expand(b, *example.shape[1:]).contiguous())
                             for b in latency_batches}
    return result


def measured_speedup(base: dict, model: dict, field: str = "latency") -> float | None:
    """How many times faster ``model`` ran than ``base`` at batch 64 (two outputs of :func:`measure`; ``field``:
    ``latency`` for torch, ``onnxruntime``); None where either was not timed."""
    timed = [row.get(field, {}).get("batch64", {}).get("median_ms") for row in (base, model)]
    return timed[0] / timed[1] if all(timed) else None


__all__ = ["agreement", "evaluate", "latency", "macs", "mean_iou", "measure", "measured_speedup", "onnx_latency",
           "paired_speedup", "params", "predict", "versions"]

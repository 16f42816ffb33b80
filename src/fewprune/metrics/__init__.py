"""Accuracy, MACs, parameters, latency, and the versions a report must record."""

from __future__ import annotations

import importlib.metadata
import platform

from .accuracy import evaluate, predict
from .complexity import macs, params
from .latency import latency


def versions() -> dict:
    """Versions of the libraries that shape a result."""
    import numpy
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    for name, dist in (("torchvision", "torchvision"), ("torch_pruning", "torch-pruning"), ("zennit", "zennit")):
        try:
            out[name] = importlib.metadata.version(dist)  # zennit has no __version__ attribute
        except importlib.metadata.PackageNotFoundError:
            pass
    from .. import __version__

    out["fewprune"] = __version__
    return out


__all__ = ["evaluate", "latency", "macs", "params", "predict", "versions"]

"""Where the work runs: a model's device, a requested device checked before any work, GPU timing.

Everything fewprune computes follows its inputs: a teacher and samples on a
GPU are compressed there. Scores, plans and reports are small and live on the
CPU. Results on a GPU match the CPU's to float tolerance, not bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def on_device(model: nn.Module, device: torch.device) -> bool:
    """Whether every parameter and buffer of ``model`` is on ``device``."""
    return all(t.device == device for t in [*model.parameters(), *model.buffers()])


def resolve_device(spec: str | torch.device | None, default: torch.device | None = None) -> torch.device:
    """The device ``spec`` names, checked to exist: ``None`` gives ``default`` (else the CPU), ``"auto"`` a
    CUDA GPU when one is visible, else the CPU. A GPU that is not there is named with the reason, before any
    work is spent."""
    if spec is None:
        return default or torch.device("cpu")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise ValueError(f"device {spec!r} is not a device torch knows (cpu, cuda, cuda:1, auto): {error}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "built without CUDA" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ValueError(f"device {spec!r}: no CUDA GPU is visible to torch ({torch.__version__}, {built}); "
                             "use --device cpu, or run where a GPU is")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
        # "cuda" means the current GPU; name it, so that it compares equal to the device tensors report
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    elif device.type != "cpu":
        raise ValueError(f"device {spec!r}: fewprune runs on cpu or cuda, not {device.type}")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a GPU runs asynchronously; a timer must not stop before it ends)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

"""Loading weights safely: safetensors, or torch checkpoints with ``weights_only=True``."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch checkpoint.

    Torch checkpoints load with ``weights_only=True``; arbitrary pickles only when
    ``allow_pickle`` is set explicitly. A checkpoint that wraps the state dict
    under ``state_dict`` or ``model`` is unwrapped.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as err:  # torch raises UnpicklingError subclasses and RuntimeError here
        if allow_pickle:
            raise
        raise ValueError(
            f"{path} could not be loaded with weights_only=True ({err.__class__.__name__}). "
            "If you trust this file, allow pickles explicitly (--allow-pickle / allow_pickle=True)."
        ) from None
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    state = OrderedDict((k.removeprefix("module."), v) for k, v in obj.items())
    metadata = getattr(obj, "_metadata", None)  # torch's per-module versions, when the file kept them
    if metadata is not None:
        state._metadata = OrderedDict(("" if k == "module" else k.removeprefix("module."), v)
                                      for k, v in metadata.items())
    return state


def load_state(model: nn.Module, state: dict, strict: bool = True):
    """``model.load_state_dict(state)`` with torch's per-module version metadata.

    safetensors files hold tensors only, and some modules (torchvision's
    MNASNet) refuse a state without their version: the state's own metadata is
    used when it has some, else the model's (the file was written by this code).
    """
    metadata = getattr(state, "_metadata", None) or getattr(model.state_dict(), "_metadata", None)
    state = OrderedDict(state)
    if metadata is not None:
        state._metadata = metadata
    return model.load_state_dict(state, strict=strict)


def load_weights(model: nn.Module, path: str | Path, allow_pickle: bool = False) -> nn.Module:
    """Load weights into ``model`` strictly, naming mismatched keys on failure."""
    state = read_state_dict(path, allow_pickle)
    missing, unexpected = load_state(model, state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights in {path} do not fit {type(model).__name__}: missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
        )
    return model

"""Removable blocks: residual blocks whose output shape equals their input shape.

Found generically: a module is a removable block when, with every parameter it
owns set to zero, it returns its input unchanged (the residual branch vanishes
and only the skip path is left; a post-add ReLU is harmless on its non-negative
input). The innermost such modules are the blocks; a user can also name them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..modes import eval_mode


def _io_shapes(model: nn.Module, example_input: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name):
        def record(module, inputs, output):
            if len(inputs) == 1 and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
                if name not in seen and inputs[0].shape == output.shape:
                    seen[name] = (inputs[0].detach().clone(), output.detach().clone())
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return seen


def find_blocks(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the innermost residual blocks of ``model`` that could be replaced by an identity."""
    with eval_mode(model):
        candidates = _io_shapes(model, example_input)
        blocks = []
        for name, (x, _) in candidates.items():
            module = model.get_submodule(name)
            if not any(True for _ in module.parameters()) or not x.any():
                continue  # an all-zero input proves nothing (every bias-free layer maps it to itself)
            zeroed = copy.deepcopy(module).eval()
            with torch.no_grad():
                for p in zeroed.parameters():
                    p.zero_()
                if torch.equal(zeroed(x), x):
                    blocks.append(name)
    # Keep the innermost: drop a candidate that contains another candidate.
    return [b for b in blocks if not any(o != b and o.startswith(b + ".") for o in blocks)]


def drop_blocks(model: nn.Module, names: list[str]) -> nn.Module:
    """Replace each named block with ``nn.Identity`` in place."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if not hasattr(parent, child):
            raise KeyError(f"model has no block named {name!r}")
        setattr(parent, child, nn.Identity())
    return model

"""MACs and parameters counted on the real model.

MACs come from torch's ``FlopCounterMode`` over one real forward, which sees
convolutions and every matmul (linear, attention written by hand). On CPU the
fused ``scaled_dot_product_attention`` dispatches to a kernel the counter has
no formula for, so it would silently count zero: we add formulas for the
fused attention kernels. Element-wise ops (BN, activations, softmax) are not
MACs and are not counted, as in the literature's tables.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..devices import model_device
from ..modes import eval_mode, frozen_parameters

aten = torch.ops.aten


def _sdpa_formula(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # FlopCounterMode calls a custom formula with its arguments' shapes, not the tensors (its shape_wrapper).
    # q·kᵀ: b·h·Lq·Lk·d MACs, attn·v: b·h·Lq·Lk·dv MACs; 2 FLOPs per MAC.
    *batch, lq, d = query_shape
    lk, dv = key_shape[-2], value_shape[-1]
    b = 1
    for s in batch:
        b *= s
    return 2 * b * lq * lk * (d + dv)


def _fused_attention_ops() -> list:
    names = [
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_attention_math",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
    ]
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


def _custom_mapping() -> dict:
    from torch.utils.flop_counter import flop_registry

    # Only kernels the installed torch does not already count (avoids double counting on upgrades).
    return {op: _sdpa_formula for op in _fused_attention_ops() if op not in flop_registry}


def counted_forward(model: nn.Module, example_input: torch.Tensor) -> FlopCounterMode:
    """One forward on ``example_input`` in eval mode, counted by ``FlopCounterMode`` (its counts per module).

    The parameters stop requiring grad meanwhile: the counter's module tracker
    hooks the gradients of every module input that requires them, and fails on
    a parameter passed in as one (timm's attention pooling passes its query).
    """
    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    with eval_mode(model), frozen_parameters(model), torch.no_grad(), counter:
        model(example_input.to(model_device(model)))
    return counter


def macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates of one forward on ``example_input`` (usually a batch of one), in eval mode."""
    return counted_forward(model, example_input).get_total_flops() // 2


def params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total

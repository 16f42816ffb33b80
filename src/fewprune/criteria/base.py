"""Criteria score every unit of every prunable group; they never train or change a model.

A criterion is called as ``criterion(model, space, batch)`` and returns
``Scores``: ``{group id: tensor of one score per unit}``, higher = keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.outputs import main_output
from ..modes import eval_mode
from ..registry import Registry
from ..structure import Group


class Scores(dict):
    """``{group id: tensor of one score per unit}`` (higher = keep).

    A criterion may also profile whole blocks (``blocks``: block name → score,
    higher = the block matters more); profile-driven allocators such as ``de``
    read it. ``locked`` names units that step-wise allocators must keep;
    ``log`` is copied into the compression report.
    Plain dicts are accepted wherever Scores are.
    """

    blocks: dict[str, float] | None = None
    locked: dict[str, list[int]] | None = None  # units no allocator may remove (e.g. C-SWAP's critical units)
    log: dict | None = None  # what the criterion wants reported (e.g. ASCA's gate training curves)

criteria: Registry = Registry("criterion")
register_criterion = criteria.register


@dataclass
class Batch:
    """The few samples as tensors; ``labels`` is None when the samples are unlabeled."""

    images: torch.Tensor
    labels: torch.Tensor | None
    teacher: nn.Module
    seed: int = 0


def slice_values(model: nn.Module, group: Group, tensor_of=lambda p: p.data, roles=("out", "in", "norm"),
                 params=("weight",)):
    """Yield ``(role, [per-unit flattened values])`` for each slice of ``group`` on the named ``params``.

    ``tensor_of`` picks what to read from each parameter (its data, its grad,
    their product …).
    """
    modules = dict(model.named_modules())
    for s in group.slices:
        if s.role not in roles or s.param not in params:
            continue
        param = getattr(modules[s.module], s.param)
        values = tensor_of(param)
        if values is None:
            continue
        moved = values.movedim(s.dim, 0)
        yield s.role, [moved[idx].reshape(-1) for idx in (torch.tensor(u, dtype=torch.long) for u in s.units)]


def reduce_slices(model: nn.Module, group: Group, per_unit, tensor_of=lambda p: p.data,
                  roles=("out", "in", "norm"), params=("weight",)) -> torch.Tensor:
    """Average over a group's slices of ``per_unit(values)`` for each unit (coupled layers share one score)."""
    totals = torch.zeros(group.size)
    count = 0
    for _, units in slice_values(model, group, tensor_of, roles, params):
        # one transfer per slice: scores live on the CPU, whatever device the weights are on
        totals += torch.stack([per_unit(v) if v.numel() else v.new_zeros(()) for v in units]).float().cpu()
        count += 1
    return totals / max(count, 1)


def teacher_predictions(teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The teacher's predicted classes (eval mode, restored after), the relevance seed for unlabeled samples."""
    with eval_mode(teacher):
        with torch.no_grad():
            return main_output(teacher(images)).argmax(1)  # per pixel for a dense prediction

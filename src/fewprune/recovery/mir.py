"""MiR — Mimicking then Replacing (Wang et al. 2022): label-free feature mimicking.

The student learns to reproduce the teacher's pre-global-pooling features
(MSE) on the few samples; its classifier head stays the teacher's, frozen,
and "replaces" the student's. The pre-pooling width must therefore be kept,
which ``needs_features`` tells the engine. Where the frozen head also reads
earlier features directly (a segmentation decoder's skip connection, as
LR-ASPP's low-level branch), those are mimicked too: the head would read
them unconstrained otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from ..criteria import Batch
from ..models.features import capture, feature_layer, head_inputs, modules_after, outputs_of, record_forward, select_channels
from ..models.memo import RowMemo
from ..modes import eval_mode
from ..structure import Pruned, frozen_parameters
from .base import Schedule, register_recovery, train_student
from .baselines import bn_recalibrate

MIR_SCHEDULE = Schedule()  # the mimicking recoveries' default


def teacher_features(teacher: nn.Module, layers: str | Sequence[str], memo: bool = True) -> RowMemo:
    """The teacher's outputs of ``layers`` (a name or several) per batch, memoised per view (``memo=False`` for
    mixed images)."""
    return RowMemo(outputs_of(teacher, *([layers] if isinstance(layers, str) else layers)), enabled=memo)


@contextmanager
def mimicking(student: nn.Module, teacher: nn.Module, layers: str | Sequence[str], targets: RowMemo | None = None,
              memo: bool = True):
    """The MiR loss ``loss(x, y)``: MSE between the student's and the teacher's outputs of ``layers`` (a name, or
    several whose MSEs are summed) on ``x``.

    The teacher runs in eval mode without gradients; its mode and the student's hooks are restored when
    the context closes. Its features come from ``targets`` (:func:`teacher_features`, to share one memo
    between several trainings), else from a new memo (``memo=False``: no memo, for mixed images). The
    loss function carries it as ``loss.teacher_memo``.
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    if targets is None:
        targets = teacher_features(teacher, layers, memo)
    with eval_mode(teacher), capture(student, *layers) as s_out:
        def loss_fn(x, y=None):
            wanted = targets(x)
            student(x)
            return sum(F.mse_loss(s_out[name], wanted[name]) for name in layers)

        loss_fn.teacher_memo = targets
        yield loss_fn


def mimicked_layers(teacher: nn.Module, example: torch.Tensor) -> list[str]:
    """What feature mimicking compares: the feature layer, then any other layer whose output the frozen head reads
    directly (:func:`~fewprune.models.features.head_inputs`)."""
    layer = feature_layer(teacher, example)
    return [layer, *head_inputs(teacher, layer, example)]


def _prepare(student: nn.Module, teacher: nn.Module, batch: Batch, seed: int, schedule: Schedule | None,
             recalibrate: bool) -> tuple[Schedule, torch.Tensor, list[str], list[str]]:
    """Shared set-up of the mimicking recoveries: BN recalibration, the layers to mimic (the feature layer first,
    then any other the head reads) and the head to freeze."""
    if recalibrate:
        bn_recalibrate(student, teacher, batch, seed=seed)
    example = batch.images[:1]
    layers = mimicked_layers(teacher, example)
    return schedule or MIR_SCHEDULE, example, layers, modules_after(student, layers[0], example)


def _mimicked(layers: list[str]) -> dict:
    """The report's record of what was mimicked."""
    return {"feature_layer": layers[0], **({"head_inputs": layers[1:]} if len(layers) > 1 else {})}


@register_recovery("mir")
def mimic(student: nn.Module, teacher: nn.Module, batch: Batch, seed: int = 0, schedule: Schedule | None = None,
          recalibrate: bool = True, progress: bool = True, mix=None) -> dict:
    """Train every layer up to the feature layer to match the teacher's features; the head is frozen.

    With ``recalibrate`` the BN statistics are first re-estimated on the samples (as for KD).
    """
    schedule, example, layers, head = _prepare(student, teacher, batch, seed, schedule, recalibrate)
    with frozen_parameters(student, head), mimicking(student, teacher, layers, memo=mix is None) as loss_fn:
        stats = train_student(student, loss_fn, batch, schedule, seed, mix=mix, description="mimicking",
                              progress=progress)
    return {**stats, **_mimicked(layers), "frozen_head": head, "schedule": asdict(schedule),
            "teacher_memo": loss_fn.teacher_memo.stats()}


mimic.needs_features = True
mimic.default_schedule = MIR_SCHEDULE


def block_output_channels(teacher: nn.Module, block: str, pruned: Pruned,
                          example: torch.Tensor) -> torch.Tensor | None:
    """The teacher's output channels of ``block`` that the student still has (None: all of them).

    A shape-preserving block writes its output through the last convolution
    it runs (and the residual add coupled to it), so that layer's kept
    outputs are the block's.
    """
    convs = [f"{block}.{n}" for n, m in teacher.get_submodule(block).named_modules()
             if isinstance(m, nn.Conv2d | nn.Linear)]
    order = [name for name, _, _ in record_forward(teacher, example, convs)]
    return pruned.kept_outputs.get(order[-1]) if order else None


def _relative_mse(student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student_out, teacher_out) / teacher_out.pow(2).mean().clamp_min(1e-8)


@register_recovery("mir-blocks")
def mimic_blocks(student: nn.Module, teacher: nn.Module, batch: Batch, pruned: Pruned, seed: int = 0,
                 schedule: Schedule | None = None, block_weight: float = 1.0, recalibrate: bool = True,
                 progress: bool = True, mix=None) -> dict:
    """MiR with every residual block's output mimicked too, on the channels the student kept.

    NOT FROM SOURCE — fewprune's proposal for the fewest samples: the final
    features alone give few constraints per image, while each block output
    gives as many as the final features. The student's channels are a subset
    of the teacher's (the plan says which), so each block output is compared
    with the same channels of the teacher's. Losses are relative MSEs
    (divided by the teacher's mean square) so shallow and deep layers weigh
    alike: final + ``block_weight`` × mean over blocks. The head is frozen.
    """
    schedule, example, layers, head = _prepare(student, teacher, batch, seed, schedule, recalibrate)
    blocks = [b for b in pruned.blocks if b not in pruned.dropped_blocks]
    channels = {b: block_output_channels(teacher, b, pruned, example) for b in blocks}
    teacher_outputs = outputs_of(teacher, *layers, *blocks)

    def kept_outputs(x):  # only the channels compared are memoised
        out = teacher_outputs(x)
        return {name: select_channels(out[name], channels[name]) if name in channels else out[name] for name in out}

    targets = RowMemo(kept_outputs, enabled=mix is None)
    with eval_mode(teacher), frozen_parameters(student, head), capture(student, *layers, *blocks) as s_out:
        def loss_fn(x, y=None):
            wanted = targets(x)
            student(x)
            inner = [_relative_mse(s_out[b], wanted[b]) for b in blocks]
            final = sum(_relative_mse(s_out[name], wanted[name]) for name in layers)  # what the head reads
            return final + block_weight * torch.stack(inner).mean() if inner else final

        stats = train_student(student, loss_fn, batch, schedule, seed, mix=mix, description="mimicking blocks",
                              progress=progress)
    return {**stats, **_mimicked(layers), "blocks": blocks, "block_weight": block_weight, "frozen_head": head,
            "schedule": asdict(schedule), "teacher_memo": targets.stats()}


mimic_blocks.needs_features = True
mimic_blocks.default_schedule = MIR_SCHEDULE
mimic_blocks.needs_structure = True

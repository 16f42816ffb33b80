"""MiR — Mimicking then Replacing (Wang et al. 2022): label-free feature mimicking.

The student learns to reproduce the teacher's pre-global-pooling features
(MSE) on the few samples; its classifier head stays the teacher's, frozen,
and "replaces" the student's. The pre-pooling width must therefore be kept,
which ``needs_features`` tells the engine.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from ..criteria import Batch
from ..models.features import capture, feature_layer, modules_after
from ..structure import frozen_parameters
from .base import Schedule, register_recovery, train_student
from .baselines import bn_recalibrate


@contextmanager
def mimicking(student: nn.Module, teacher: nn.Module, layer: str):
    """The MiR loss ``loss(x, y)``: MSE between the student's and the teacher's ``layer`` outputs on ``x``.

    The teacher runs in eval mode without gradients; its mode and the hooks are restored when the context closes.
    """
    teacher_mode = teacher.training
    teacher.eval()
    try:
        with capture(student, layer) as s_out, capture(teacher, layer) as t_out:
            def loss_fn(x, y=None):
                with torch.no_grad():
                    teacher(x)
                student(x)
                return F.mse_loss(s_out[layer], t_out[layer])

            yield loss_fn
    finally:
        teacher.train(teacher_mode)


@register_recovery("mir")
def mimic(student: nn.Module, teacher: nn.Module, batch: Batch, seed: int = 0, schedule: Schedule | None = None,
          recalibrate: bool = True, progress: bool = True, mix=None) -> dict:
    """Train every layer up to the feature layer to match the teacher's features; the head is frozen.

    With ``recalibrate`` the BN statistics are first re-estimated on the samples (as for KD).
    """
    schedule = schedule or Schedule()
    if recalibrate:
        bn_recalibrate(student, teacher, batch, seed=seed)
    example = batch.images[:1]
    layer = feature_layer(teacher, example)
    head = modules_after(student, layer, example)
    with frozen_parameters(student, head), mimicking(student, teacher, layer) as loss_fn:
        stats = train_student(student, loss_fn, batch, schedule, seed, mix=mix, description="mimicking",
                              progress=progress)
    return {**stats, "feature_layer": layer, "frozen_head": head, "schedule": asdict(schedule)}


mimic.needs_features = True

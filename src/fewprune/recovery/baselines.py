"""Baseline recoveries: none, batch-norm recalibration, knowledge distillation."""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from ..criteria import Batch
from ..models.memo import RowMemo
from ..models.outputs import main_output
from .base import Schedule, augment_batch, register_recovery, train_student


@register_recovery("none")
def no_recovery(student: nn.Module, teacher: nn.Module, batch: Batch, seed: int = 0, progress: bool = True) -> dict:
    """Leave the pruned student as it is."""
    return {}


@register_recovery("bn")
@torch.no_grad()
def bn_recalibrate(student: nn.Module, teacher: nn.Module, batch: Batch, seed: int = 0, passes: int = 20,
                   batch_size: int = 64, progress: bool = True) -> dict:
    """Re-estimate every BatchNorm's running statistics from the few samples (augmented), weights untouched.

    Pruning shifts the statistics each BN sees; the teacher's stored ones no
    longer fit. Statistics are a plain average over ``passes`` augmented views.
    """
    norms = [m for m in student.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return {"bn_layers": 0}
    saved_momentum = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    gen = torch.Generator().manual_seed(seed)
    student.eval()
    for m in norms:
        m.train()
    try:
        for p in range(passes):
            order = torch.randperm(len(batch.images), generator=gen)
            for start in range(0, len(order), batch_size):
                x = batch.images[order[start : start + batch_size]]
                student(augment_batch(x, gen) if p else x)
    finally:
        for m, momentum in zip(norms, saved_momentum, strict=True):
            m.momentum = momentum
        student.eval()
    return {"bn_layers": len(norms), "passes": passes}


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation loss: T² · KL(teacher ‖ student) at temperature T, averaged over the predictions
    (images, or pixels of a dense prediction: its loss stays on a classifier's scale)."""
    t = temperature
    predictions = student_logits.numel() // student_logits.shape[1]  # = batch size for class scores per image
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="sum", log_target=True) / predictions * t * t


# lr 0.005, not MiR's 0.02: on 50 samples KD over-fits the teacher's logits faster
# (resnet20-fmnist, 50% MACs, 50 samples: 90.1% at 0.005 vs 86.9% at 0.02).
KD_SCHEDULE = Schedule(lr=0.005)


@register_recovery("kd")
def distill(student: nn.Module, teacher: nn.Module, batch: Batch, seed: int = 0, temperature: float = 4.0,
            label_weight: float = 0.0, schedule: Schedule | None = None, recalibrate: bool = True,
            progress: bool = True, mix=None) -> dict:
    """Knowledge distillation on the few samples: KL to the teacher's logits (+ optional CE on labels).

    Labels are optional: with ``label_weight`` = 0 (the default, since few-sample
    labels mostly repeat what the teacher says) no label is read. With
    ``recalibrate`` the BN statistics are first re-estimated on the samples:
    training a pruned net from stale statistics wastes the first iterations or diverges.
    """
    schedule = schedule or distill.default_schedule
    teacher.eval()
    if recalibrate:
        bn_recalibrate(student, teacher, batch, seed=seed)

    # Mixed images never repeat; plain augmented views do, so the teacher's logits on them are memoised.
    teacher_logits = RowMemo(teacher, enabled=mix is None)

    def loss_fn(x, y):
        with torch.no_grad():
            target = main_output(teacher_logits(x))
        logits = main_output(student(x))
        loss = kd_loss(logits, target, temperature)
        if label_weight and y is not None:
            loss = (1 - label_weight) * loss + label_weight * F.cross_entropy(logits, y)
        return loss

    stats = train_student(student, loss_fn, batch, schedule, seed, mix=mix, description="distilling",
                          progress=progress)
    return {**stats, "temperature": temperature, "label_weight": label_weight, "schedule": asdict(schedule),
            "teacher_memo": teacher_logits.stats()}


distill.default_schedule = KD_SCHEDULE  # what fewprune.methods.with_schedule starts from


# Labels enter the loss only with a label weight (see fewprune.methods.reads_labels).
distill.reads_labels = lambda options: bool(options.get("label_weight"))

"""First-order Taylor importance on the few samples (Molchanov et al. 2019)."""

from __future__ import annotations

import torch.nn.functional as F

from ..models.outputs import main_output
from ..modes import eval_mode
from ..structure import PruningSpace, gradients_enabled
from .base import Batch, Scores, reduce_slices, register_criterion, teacher_predictions


@register_criterion("taylor")
def taylor(model, space: PruningSpace, batch: Batch, batch_size: int = 64) -> Scores:
    """|Σ w·∂L/∂w| per unit, accumulated over the few samples.

    The loss is cross-entropy on the true labels, or on the teacher's
    predictions when the samples are unlabeled. Gradients are computed on a
    scratch copy of the parameters' ``.grad`` and cleared after, so the model
    is left exactly as it was.
    """
    images = batch.images
    if batch.labels is not None:
        targets = batch.labels
    else:
        targets = teacher_predictions(batch.teacher, images)
    saved_grads = {p: p.grad for p in model.parameters()}
    try:  # BN in inference mode: importance of the deployed function
        with eval_mode(model), gradients_enabled(model):
            for p in model.parameters():
                p.grad = None
            for start in range(0, len(images), batch_size):
                x, y = images[start : start + batch_size], targets[start : start + batch_size]
                loss = F.cross_entropy(main_output(model(x)), y, reduction="sum") / len(images)
                loss.backward()
            scores = {
                g.id: reduce_slices(model, g, lambda v: v.sum().abs(),
                                    tensor_of=lambda p: None if p.grad is None else p.data * p.grad,
                                    roles=("out",))
                for g in space.prunable
            }
    finally:
        for p, grad in saved_grads.items():
            p.grad = grad
    return scores


taylor.reads_labels = True  # cross-entropy on the labels when the samples have them

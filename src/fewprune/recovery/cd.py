"""Cross distillation — CD (Bai et al. AAAI 2020): layer-wise correction and imitation, front to back.

For each pruned convolution, in forward order, the student layer is trained
on the few samples with

    μ ‖f_S(X_T) − f_T(X_T)‖² + (1 − μ) ‖f_S(X_S) − f_T(X_S)‖²

where ``X_T`` is the teacher's input to that layer and ``X_S`` the (already
corrected) student's: *correction* teaches the layer to undo the error it
would make on clean inputs, *imitation* to behave like the teacher on the
inputs it will really get. The student sees the teacher's input on the
channels it kept; the teacher sees the student's input with the removed
channels as zeros; outputs are compared on the kept output channels. This is
CD's reconstruction step after any criterion has pruned (the paper's own
proximal-gradient channel selection is a criterion's job here); label-free.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..criteria import Batch
from ..models.features import record_forward
from ..modes import eval_mode
from ..progress import progress_bar
from ..structure import Pruned
from .base import RecoveryDiverged, register_recovery


@contextmanager
def _inputs(model: nn.Module, name: str):
    """Collect the inputs of module ``name`` over forwards."""
    seen: list[torch.Tensor] = []
    handle = model.get_submodule(name).register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        yield seen
    finally:
        handle.remove()


def _layer_inputs(model: nn.Module, name: str, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    with _inputs(model, name) as seen, torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    return torch.cat(seen)


@register_recovery("cd")
def cross_distill(student: nn.Module, teacher: nn.Module, batch: Batch, seed: int = 0, pruned: Pruned | None = None,
                  mu: float = 0.9, iterations: int = 300, lr: float = 1e-3, batch_size: int = 64,
                  progress: bool = True) -> dict:
    """Train each pruned convolution on correction + imitation losses (``mu`` weighs correction), front to back.

    Adam on that layer's weights only, ``iterations`` steps of ``batch_size``
    images per layer; both models in eval mode. μ = 0.9 is the authors'
    ResNet-56 setting (0.6 for VGG): on resnet20-fmnist at 50% MACs with 50
    samples, μ = 0.6 left 57.6% accuracy and μ = 0.9 89.4%, because the
    imitation term keeps each layer close to the teacher's cut-down layer.
    A non-finite loss stops with :class:`RecoveryDiverged`.
    """
    if pruned is None:
        raise ValueError("cd needs to know what was pruned (call it through fewprune.compress)")
    images = batch.images
    candidates = [n for n, m in student.named_modules()
                  if isinstance(m, nn.Conv2d) and m.groups == 1 and (n in pruned.kept_inputs or n in pruned.kept_outputs)]
    order = [n for n, _, _ in record_forward(student, images[:1], candidates)]
    gen = torch.Generator().manual_seed(seed)
    fitted = []
    with eval_mode(student, teacher):
        for name in progress_bar(order, total=len(order), description="cross distillation", enabled=progress):
            s_layer, t_layer = student.get_submodule(name), teacher.get_submodule(name)
            kept_in, kept_out = pruned.kept_inputs.get(name), pruned.kept_outputs.get(name)
            xs = _layer_inputs(student, name, images, batch_size)
            xt = _layer_inputs(teacher, name, images, batch_size)
            xt_for_student = xt if kept_in is None else xt.index_select(1, kept_in)
            xs_for_teacher = xs
            if kept_in is not None:  # the teacher reads the student's input with removed channels as zeros
                xs_for_teacher = xs.new_zeros(xt.shape)
                xs_for_teacher[:, kept_in] = xs
            with torch.no_grad():
                corrected_target = t_layer(xt)
                imitated_target = t_layer(xs_for_teacher)
                if kept_out is not None:
                    corrected_target = corrected_target.index_select(1, kept_out)
                    imitated_target = imitated_target.index_select(1, kept_out)
            params = [p for p in s_layer.parameters(recurse=False)]
            flags = [p.requires_grad for p in params]
            for p in params:
                p.requires_grad_(True)
            opt = torch.optim.Adam(params, lr=lr)
            try:
                with torch.no_grad():
                    before = (mu * F.mse_loss(s_layer(xt_for_student), corrected_target)
                              + (1 - mu) * F.mse_loss(s_layer(xs), imitated_target)).item()
                for it in range(iterations if before > 1e-12 else 0):  # nothing to correct: leave it
                    idx = torch.randperm(len(images), generator=gen)[:batch_size]
                    loss = (mu * F.mse_loss(s_layer(xt_for_student[idx]), corrected_target[idx])
                            + (1 - mu) * F.mse_loss(s_layer(xs[idx]), imitated_target[idx]))
                    if not torch.isfinite(loss):
                        raise RecoveryDiverged(f"cross distillation of {name}: loss became {loss.item()} at step "
                                               f"{it + 1}; lower lr")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    after = (mu * F.mse_loss(s_layer(xt_for_student), corrected_target)
                             + (1 - mu) * F.mse_loss(s_layer(xs), imitated_target)).item()
            finally:
                for p, flag in zip(params, flags, strict=True):
                    p.requires_grad_(flag)
                    p.grad = None
            fitted.append({"layer": name, "loss_before": before, "loss_after": after})
    return {"layers": fitted, "mu": mu, "iterations": iterations, "lr": lr}


cross_distill.needs_structure = True

"""LRP relevance per unit (Yeom et al. 2021, "Pruning by Explaining"), computed with zennit.

Rules as in the reference code: the first convolution uses the z^B rule
(bounded by the samples' own pixel range), the other convolutions z⁺ with
biases ignored, linear layers and pooling ε (1e-6); every BatchNorm that
directly follows a conv or linear layer is merged into it first (a canonizer,
found generically by tracing which module consumes which output). Residual
additions need no module: zennit's modified gradients make an addition split
relevance in proportion to its inputs.

A unit's relevance is |R| summed over positions and samples at the outputs of
the layers that produce it, with each sample's relevance seeded as 1 at its
true class (or at the teacher's prediction when the samples are unlabeled).
Attribution works on the model in place inside a context that restores it
exactly: weights, BN statistics, hooks, modes and ``requires_grad`` flags.
"""

from __future__ import annotations

import types
from contextlib import contextmanager

import torch
from torch import nn

from ..models.features import record_forward
from ..models.outputs import class_scores
from ..modes import eval_mode
from ..structure import PruningSpace, frozen_parameters
from .base import Batch, Scores, register_criterion, teacher_predictions

_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batch_norm_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[tuple[str], str]]:
    """``((linear name,), batch norm name)`` for each BatchNorm whose input is exactly one linear layer's output."""
    calls = record_forward(model, example, [n for n, m in model.named_modules() if isinstance(m, _LINEAR + _NORM)])
    norms = {n for n, m in model.named_modules() if isinstance(m, _NORM)}
    return [((producer,), name) for name, inputs, _ in calls if name in norms
            for producer, _, output in calls if producer not in norms and output is inputs[0]]


def _sum_forward(module: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return module.canonizer_sum(torch.stack([a, b], dim=-1))


def _residual_joins(name: str, module: nn.Module):
    """Route fewprune's ``Add`` through zennit's ``Sum`` so the ε-stabilised proportional rule applies."""
    from zennit.layer import Sum

    from ..models.layers import Add

    if isinstance(module, Add):
        return {"forward": types.MethodType(_sum_forward, module), "canonizer_sum": Sum()}
    return None


def _inverted_residual_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module.canonizer_sum(torch.stack([x, module.canonizer_branch(x)], dim=-1))


def _torchvision_inverted_residuals(name: str, module: nn.Module):
    """torchvision's MobileNetV2 and V3 blocks add their input with a bare ``+``: give them a Sum module too.

    The residual branch is ``conv`` in MobileNetV2 and ``block`` in MobileNetV3.
    """
    from zennit.layer import Sum

    branch = getattr(module, "conv", None) or getattr(module, "block", None)
    if type(module).__name__ == "InvertedResidual" and getattr(module, "use_res_connect", False) \
            and isinstance(branch, nn.Module):
        # the branch's __call__ (its hooks run), not the module: a second name for it would be a second submodule
        return {"forward": types.MethodType(_inverted_residual_forward, module), "canonizer_sum": Sum(),
                "canonizer_branch": branch.__call__}
    return None


def canonizers(model: nn.Module, example: torch.Tensor) -> list:
    """BN merging (found by tracing) plus residual-join canonizers for fewprune's and torchvision's blocks.

    An addition written as a bare ``+`` in an unknown model is not seen: relevance
    then reaches both of its inputs in full, so scores stay usable but not conserved.
    """
    from zennit.canonizers import AttributeCanonizer, NamedMergeBatchNorm
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    return [NamedMergeBatchNorm(batch_norm_pairs(model, example)), AttributeCanonizer(_residual_joins),
            AttributeCanonizer(_torchvision_inverted_residuals), ResNetBasicBlockCanonizer(),
            ResNetBottleneckCanonizer()]


@contextmanager
def yeom_composite(model: nn.Module, example: torch.Tensor, low: torch.Tensor, high: torch.Tensor):
    """Register the LRP rules and canonizers on ``model``; everything is undone on exit."""
    from zennit.composites import SpecialFirstLayerMapComposite, layer_map_base
    from zennit.rules import Epsilon, ZBox, ZPlus
    from zennit.types import Convolution

    composite = SpecialFirstLayerMapComposite(
        layer_map=layer_map_base(1e-6) + [(Convolution, ZPlus(zero_params=["bias"])),
                                          (nn.Linear, Epsilon(epsilon=1e-6))],
        first_map=[(Convolution, ZBox(low=low, high=high))],
        canonizers=canonizers(model, example),
    )
    with composite.context(model) as modified:
        yield modified


def _keep(seen: dict, name: str, output: torch.Tensor) -> None:
    output.retain_grad()  # under zennit's rules the gradient reaching a tensor *is* its relevance
    seen[name] = output


def relevance(model: nn.Module, images: torch.Tensor, classes: torch.Tensor | None = None,
              layers: list[str] | None = None, batch_size: int = 32) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """LRP relevance at the outputs of ``layers`` and at the input, summed over samples.

    Returns ``({layer: relevance map summed over samples (C×…)}, input relevance per sample N×…)``.
    ``classes`` defaults to the model's own predictions.
    """
    layers = layers or []
    # z^B bounds: the samples' own per-channel pixel range (in the model's normalised input space)
    shape = (min(batch_size, len(images)), *images.shape[1:])
    low = images.amin(dim=(0, *range(2, images.ndim)), keepdim=True)[:1].expand(shape).contiguous()
    high = images.amax(dim=(0, *range(2, images.ndim)), keepdim=True)[:1].expand(shape).contiguous()
    totals: dict[str, torch.Tensor] = {}
    input_relevance = []
    with eval_mode(model), frozen_parameters(model), yeom_composite(model, images[:1], low, high) as modified:
        modules = dict(modified.named_modules())
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].clone().requires_grad_(True)
            seen: dict[str, torch.Tensor] = {}
            handles = [modules[n].register_forward_hook(lambda m, i, o, n=n, seen=seen: _keep(seen, n, o))
                       for n in layers]
            try:
                logits = modified(x)
            finally:
                for h in handles:
                    h.remove()
            logits = class_scores(logits, "LRP")
            chosen = logits.argmax(1) if classes is None else classes[start : start + batch_size]
            logits.backward(torch.zeros_like(logits).scatter_(1, chosen[:, None], 1.0))  # unit relevance
            for name, out in seen.items():
                r = out.grad.detach().sum(0)
                totals[name] = totals[name] + r if name in totals else r
            input_relevance.append(x.grad.detach())
    return totals, torch.cat(input_relevance)


def _channel_totals(relevance_map: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """|R| summed over everything but the channel dimension."""
    r = relevance_map.abs()
    dim = channel_dim - 1 if channel_dim > 0 else channel_dim  # the sample dimension is already summed
    return r.movedim(dim, 0).reshape(r.shape[dim], -1).sum(1)


@register_criterion("lrp")
def lrp_scores(model: nn.Module, space: PruningSpace, batch: Batch) -> Scores:
    """Per-unit LRP relevance (Yeom et al.): |R| at the producing layers' outputs, summed over space and samples."""
    producers = {}
    for g in space.prunable:
        producers[g.id] = [s for s in g.slices if s.role == "out" and s.param == "weight"
                           and isinstance(model.get_submodule(s.module), _LINEAR)]
    layers = sorted({s.module for slices in producers.values() for s in slices})
    classes = batch.labels if batch.labels is not None else teacher_predictions(batch.teacher, batch.images)
    maps, _ = relevance(model, batch.images, classes, layers)
    scores = Scores()
    for g in space.prunable:
        total = torch.zeros(g.size)
        for s in producers[g.id]:
            layer = model.get_submodule(s.module)
            per_channel = _channel_totals(maps[s.module], 1 if not isinstance(layer, nn.Linear) else -1).cpu()
            total += torch.stack([per_channel[torch.tensor(u, dtype=torch.long)].sum() for u in s.units])
        # mean over the coupled producing layers, so a residual-stream channel written by many
        # layers is not favoured over a block's inner channel just for being counted more often
        scores[g.id] = total / max(len(producers[g.id]), 1)
    return scores


lrp_scores.reads_labels = True  # explains each sample's true class when the samples have labels

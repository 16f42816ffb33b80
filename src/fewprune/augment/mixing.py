"""Mixing augmentations for recovery: CMaMix, MixUp, CutMix.

Every few-sample batch is recombined with a shuffled copy of itself, so the
student sees many more distinct inputs than there are samples. Mixing keeps
no labels (the label-free recoveries compare the student with the teacher on
the mixed image itself).

An augmentation is registered as a factory ``factory(teacher, example, **options)``
returning ``mix(images, generator) -> images`` (or None: no mixing).
"""

from __future__ import annotations

import torch
from torch import nn

from ..criteria.concept_mask import as_spatial, concept_mask
from ..models.features import feature_layer, outputs_of
from ..models.memo import RowMemo
from ..modes import eval_mode
from ..registry import Registry

augmentations: Registry = Registry("augmentation")
register_augmentation = augmentations.register


def paste(images: torch.Tensor, partners: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``images`` with the ``partners``' pixels wherever ``masks`` (B×1×H×W, 0/1) is set."""
    masks = masks.to(images.dtype)
    return images * (1 - masks) + partners * masks


def _partners(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)


def _beta(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws of Beta(α, α). torch's sampler takes no generator, so it runs under a fork of the
    global RNG seeded from ``generator``: reproducible, and the caller's global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):  # the draws are on the CPU: no GPU's RNG to fork
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
        return torch.distributions.Beta(alpha, alpha).sample((n,))


def salient_masks(teacher: nn.Module, layer: str, images: torch.Tensor, theta: float = 0.2,
                  features: RowMemo | None = None) -> torch.Tensor:
    """The teacher's salient region per image: the concept mask of its channel-summed pre-pooling features.

    ``features``: a memo of the teacher's ``layer`` outputs (:func:`outputs_of`), to reuse them across batches.
    """
    if features is None:
        features = RowMemo(outputs_of(teacher, layer), enabled=False)
    summed = as_spatial(features(images)[layer]).sum(dim=1, keepdim=True)
    return concept_mask(summed, tuple(images.shape[-2:]), theta)


@register_augmentation("nomix")
def no_mixing(teacher: nn.Module, example: torch.Tensor):
    """No mixing: recovery sees the shifted and flipped samples only (the ablation reference)."""
    return None


@register_augmentation("cmamix")
def cmamix(teacher: nn.Module, example: torch.Tensor, theta: float = 0.2):
    """CMaMix (Chen et al. 2026): paste each partner's teacher-salient region onto the image at the same place.

    The teacher runs in eval mode and without gradients; it is not changed.
    """
    layer = feature_layer(teacher, example)
    features = RowMemo(outputs_of(teacher, layer))  # the batches are augmented views of a few samples: they repeat

    def mix(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        order = _partners(len(images), generator)
        with eval_mode(teacher):
            masks = salient_masks(teacher, layer, images, theta, features)
        return paste(images, images[order], masks[order])

    return mix


@register_augmentation("mixup")
def mixup(teacher: nn.Module, example: torch.Tensor, alpha: float = 0.4):
    """MixUp: a convex blend with a partner, λ ~ Beta(α, α) per image."""
    def mix(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        order = _partners(len(images), generator)
        lam = _beta(alpha, len(images), generator).to(images.device, images.dtype)[:, None, None, None]
        return lam * images + (1 - lam) * images[order]

    return mix


@register_augmentation("cutmix")
def cutmix(teacher: nn.Module, example: torch.Tensor, alpha: float = 1.0):
    """CutMix: paste a random box of a partner, box area 1 − λ with λ ~ Beta(α, α)."""
    def mix(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = images.shape
        order = _partners(n, generator)
        lam = _beta(alpha, n, generator)
        masks = torch.zeros(n, 1, h, w, device=images.device)
        for i, value in enumerate(lam.tolist()):
            bh, bw = round(h * (1 - value) ** 0.5), round(w * (1 - value) ** 0.5)
            cy = int(torch.randint(h, (1,), generator=generator))
            cx = int(torch.randint(w, (1,), generator=generator))
            top, left = max(0, cy - bh // 2), max(0, cx - bw // 2)
            masks[i, :, top : min(h, top + bh), left : min(w, left + bw)] = 1
        return paste(images, images[order], masks)

    return mix

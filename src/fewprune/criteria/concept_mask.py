"""Concept masks (CMa, Chen et al. 2026): where each channel of a feature map "looks".

A channel's concept mask is the set of input pixels where its (upsampled)
activation is among its top θ at native resolution. A block that barely moves
any channel's mask is easy to remove; the ``cma-block`` criterion scores
blocks by how many mask pixels flip between their input and output, and the
``cma`` criterion adds that per-block profile to L1 channel scores for the
``de`` allocator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models.features import module_io
from ..structure import PruningSpace
from .base import Batch, Scores, register_criterion
from .magnitude import l1


def as_spatial(features: torch.Tensor) -> torch.Tensor:
    """A B×C×h×w view of a conv map, or of transformer tokens B×N×D laid out on their patch grid.

    A leading class token (N − 1 a perfect square) is dropped.
    """
    if features.ndim == 4:
        return features
    if features.ndim != 3:
        raise ValueError(f"concept masks need a B×C×h×w map or B×N×D tokens, got shape {tuple(features.shape)}")
    b, n, d = features.shape
    for skip in (0, 1):
        side = math.isqrt(n - skip)
        if side * side == n - skip and side > 0:
            return features[:, skip:].transpose(1, 2).reshape(b, d, side, side)
    raise ValueError(f"{n} tokens do not form a square patch grid (with or without a class token)")


def concept_mask(features: torch.Tensor, size: tuple[int, int], theta: float = 0.2) -> torch.Tensor:
    """Boolean B×C×H×W mask of each channel's top-``theta`` region, upsampled to ``size``.

    The threshold is the channel's value at sorted position ⌊θ·(h·w − 1)⌋ at
    native resolution, applied to the bilinearly upsampled map (as in the
    reference code). A channel whose threshold is 0 (a mostly dead ReLU map)
    keeps only its non-zero pixels, so an all-zero channel has an empty mask.
    """
    features = as_spatial(features).float()
    b, c, h, w = features.shape
    k = math.floor(theta * (h * w - 1))
    threshold = features.reshape(b, c, h * w).sort(dim=2, descending=True).values[:, :, k]
    upsampled = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
    tau = threshold[:, :, None, None]
    return torch.where(tau == 0, upsampled != 0, upsampled >= tau)


def mask_divergence(block_input: torch.Tensor, block_output: torch.Tensor, size: tuple[int, int],
                    theta: float = 0.2) -> int:
    """Number of concept-mask pixels that flip between a block's input and output (summed over batch and channels)."""
    flipped = concept_mask(block_input, size, theta) ^ concept_mask(block_output, size, theta)
    return int(flipped.sum())


def block_divergence(model, blocks: list[str], images: torch.Tensor, theta: float = 0.2,
                     batch_size: int = 16) -> dict[str, int]:
    """Concept-mask divergence of every named block on ``images``, the model in eval mode.

    One block is hooked at a time and masks are built per mini-batch, so
    memory stays at one batch of one block's masks (the reference code keeps
    all blocks at once and runs the teacher in train mode, which moves its BN
    statistics; here the model is left exactly as it was).
    """
    size = tuple(images.shape[-2:])
    totals = {b: 0 for b in blocks}
    for name, x, y in module_io(model, blocks, images, batch_size):
        totals[name] += mask_divergence(x, y, size, theta)
    return totals


@register_criterion("cma-block")
def concept_block_scores(model, space: PruningSpace, batch: Batch, theta: float = 0.2) -> dict[str, float]:
    """Block score = concept-mask divergence (a block that moves no channel's region is dropped first)."""
    return {b: float(d) for b, d in block_divergence(model, space.blocks, batch.images, theta).items()}


concept_block_scores.granularity = "blocks"


@register_criterion("cma")
def concept_profiled_l1(model, space: PruningSpace, batch: Batch, theta: float = 0.2) -> Scores:
    """L1 scores inside each block plus the blocks' concept-mask divergences (``Scores.blocks``) for the ``de`` allocator."""
    if not space.blocks:
        raise ValueError(f"{type(model).__name__} has no shape-preserving residual block: filter-level CMa "
                         "needs blocks to profile (use l1+mir or a block-free allocator)")
    scores = Scores(l1(model, space, batch))
    scores.blocks = {b: float(d) for b, d in block_divergence(model, space.blocks, batch.images, theta).items()}
    return scores


# Its scores are made for the profile-matching allocator: a composition such as ``cma+lsq`` gets CMa's per-block
# ratios (with ``uniform`` the block profile would be ignored and the plan would be plain L1's), and a depth
# target drops the blocks CMa's own block criterion picks.
concept_profiled_l1.allocation, concept_profiled_l1.block_criterion = "de", "cma-block"

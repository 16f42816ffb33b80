"""Block criteria: one score per removable residual block (higher = keep), for block-level pruning."""

from __future__ import annotations

import torch

from ..models.features import module_io
from ..structure import PruningSpace
from .base import Batch, register_criterion


@register_criterion("block-residual")
def residual_ratio(model, space: PruningSpace, batch: Batch) -> dict[str, float]:
    """‖block(x) − x‖ / ‖x‖ over the few samples: how much each block changes what flows through it."""
    change = {b: 0.0 for b in space.blocks}
    size = {b: 0.0 for b in space.blocks}
    for name, x, y in module_io(model, space.blocks, batch.images):
        change[name] += (y - x).pow(2).sum().item()
        size[name] += x.pow(2).sum().item()
    return {b: (change[b] / size[b]) ** 0.5 if size[b] > 0 else 0.0 for b in space.blocks}


@register_criterion("block-random")
def random_blocks(model, space: PruningSpace, batch: Batch) -> dict[str, float]:
    """Random block scores from the run's seed (the block-level sanity baseline)."""
    gen = torch.Generator().manual_seed(batch.seed)
    return dict(zip(space.blocks, torch.rand(len(space.blocks), generator=gen).tolist(), strict=True))


residual_ratio.granularity = random_blocks.granularity = "blocks"

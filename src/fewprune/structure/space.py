"""Everything an allocator needs to know about one model: its groups, its blocks, their costs."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import find_blocks
from .cost import CostModel
from .groups import Group, find_groups, traced_islands


class PruningSpace:
    """The prunable groups and removable blocks of ``model`` plus an analytic cost model.

    Built on the model as it is (after any block dropping); the model itself is not changed.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor, protected: set[str] | None = None,
                 protect_features: bool = False, blocks: list[str] | None = None, min_width: int | None = None):
        """``min_width``: no channel group is pruned below that many channels (a narrower one not at all)."""
        self.example_input = example_input[:1]
        self.groups: list[Group] = find_groups(model, self.example_input, protected, protect_features)
        self.islands = traced_islands(model, self.example_input)  # None: traced whole (the usual case)
        for g in self.groups:
            if min_width and g.kind == "channels":
                g.min_keep = max(g.min_keep, min(g.size, min_width))
        self.blocks: list[str] = find_blocks(model, self.example_input) if blocks is None else list(blocks)
        self.cost = CostModel.measure(model, self.example_input, self.groups)

    @property
    def prunable(self) -> list[Group]:
        return [g for g in self.groups if not g.protected]

    def group(self, gid: str) -> Group:
        for g in self.groups:
            if g.id == gid:
                return g
        raise KeyError(f"no group {gid!r}")

    def keep_counts(self, removed: dict[str, list[int]]) -> dict[str, int]:
        return {g.id: g.size - len(removed.get(g.id, ())) for g in self.groups}

"""Structure: what can be pruned (groups, blocks), what it costs, the Plan, and the surgery that applies it."""

from ..modes import frozen_parameters
from .blocks import drop_blocks, find_blocks
from .cost import CostModel
from .gates import ChannelGates
from .graph import dependency_graph, gradients_enabled
from .groups import Group, Slice, find_groups
from .plan import Plan, Pruned
from .space import PruningSpace
from .surgery import Silencer, apply_plan, masked_copy

__all__ = [
    "ChannelGates", "CostModel", "Group", "Plan", "Pruned", "PruningSpace", "Silencer", "Slice", "apply_plan",
    "dependency_graph", "drop_blocks", "find_blocks", "find_groups", "frozen_parameters", "gradients_enabled",
    "masked_copy",
]

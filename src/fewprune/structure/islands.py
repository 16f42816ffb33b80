"""Tracing a model by parts when torch-pruning cannot trace it whole.

torch-pruning's tracer breaks on some layouts: ShuffleNet's channel shuffle
(a reshape it divides by zero in), Swin's patch merging (a concatenation of
strided slices), and MaxViT's window partitions need more memory than a
machine has. Such a model is still mostly made of parts it can trace: the
branches of a ShuffleNet unit, the MLP of a Swin block.

An *island* is a submodule called once, with one tensor in and one tensor
out, that traces on its own. It is traced between two identity-shaped
*boundary* layers (a 1×1 conv or a linear layer on its channel dimension), so
every channel coupled to what enters or leaves the island lands in a group
with a boundary layer, and that group is protected: the island's outside
widths stay as they are, and only its inner channels (a branch's hidden
width, an MLP's hidden neurons) are pruned. What torch-pruning could not
trace between the islands is left exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from ..modes import eval_mode
from .graph import PRUNABLE_TYPES, UnsupportedModel, dependency_graph, memory_guard, torch_pruning_errors

CHANNEL_LAST_TYPES = (nn.Linear, nn.LayerNorm)
ISLAND_MEMORY = 2 << 30  # bytes an island's grouping may take beyond what the process holds
_CONV_BY_RANK = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}


@dataclass
class IslandExample:
    """What one call of a submodule saw: its single tensor input and output."""

    input: torch.Tensor
    output: torch.Tensor
    channel_dim: int  # of the input: 1 (channels first, convs) or -1 (channels last, linear layers)
    output_channel_dim: int = 1  # of the output (a conv stem followed by a permute switches)


class Bounded(nn.Module):
    """``leave(island(enter(x)))``: an island between two boundary layers, for tracing only."""

    def __init__(self, island: nn.Module, example: IslandExample):
        super().__init__()
        self.island = island
        self.enter = _boundary(example.input, example.channel_dim)
        self.leave = _boundary(example.output, example.output_channel_dim)

    def forward(self, x):
        return self.leave(self.island(self.enter(x)))


def _boundary(tensor: torch.Tensor, channel_dim: int) -> nn.Module:
    """A layer that keeps the tensor's shape and couples every channel along ``channel_dim``."""
    if channel_dim == -1 or tensor.ndim == 2:
        width = tensor.shape[-1]
        return nn.Linear(width, width)
    width = tensor.shape[1]
    return _CONV_BY_RANK[tensor.ndim](width, width, 1)


def record_examples(model: nn.Module, example_input: torch.Tensor) -> dict[str, IslandExample]:
    """Every submodule called exactly once with one tensor in and one tensor out, with what it saw.

    The input's channel dimension is the one its first parametrised layer works
    on, the output's the one its last works on: last for a linear layer or
    LayerNorm (a Swin block), else the second.
    """
    calls: dict[str, int] = {}
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    first_layer: dict[str, nn.Module] = {}
    last_layer: dict[str, nn.Module] = {}
    running: list[str] = []  # the modules whose forward is under way, outermost first

    def enter(name):
        def note(module, inputs):
            running.append(name)
            if any(True for _ in module.parameters(recurse=False)):
                for outer in running:
                    first_layer.setdefault(outer, module)
                    last_layer[outer] = module
        return note

    def leave(name):
        def record(module, inputs, output):
            running.pop()
            calls[name] = calls.get(name, 0) + 1
            if len(inputs) == 1 and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
                seen[name] = (inputs[0].detach(), output.detach())
        return record

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave(name)))
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()

    def dim(layer) -> int:
        return -1 if isinstance(layer, CHANNEL_LAST_TYPES) else 1

    return {name: IslandExample(x, y, dim(first_layer.get(name)), dim(last_layer.get(name)))
            for name, (x, y) in seen.items() if calls[name] == 1}


def trace_island(module: nn.Module, example: IslandExample):
    """The bounded island, its dependency graph and torch-pruning's groups; raises when it cannot be traced."""
    bounded = Bounded(module, example)
    graph = dependency_graph(bounded, example.input)
    # A part whose index mappings outgrow 2 GiB fails fast, and its smaller children are tried instead.
    with memory_guard(f"grouping the channels of {type(module).__name__}", most=ISLAND_MEMORY):
        with torch_pruning_errors(module, "group"):
            tp_groups = list(graph.get_all_groups(ignored_layers=[], root_module_types=PRUNABLE_TYPES))
    return bounded, graph, tp_groups


def find_islands(model: nn.Module, example_input: torch.Tensor, has_inner_groups) -> list[str]:
    """The largest submodules, top-down, that trace on their own and have channels of their own to prune.

    ``has_inner_groups(name, module, example)`` decides the last part (it is the
    grouping code's business which groups are prunable).
    """
    examples = record_examples(model, example_input)
    found: list[str] = []

    def visit(name: str, module: nn.Module) -> None:
        if name in examples and any(True for _ in module.parameters()):
            try:
                if has_inner_groups(name, module, examples[name]):
                    found.append(name)
                return
            except (UnsupportedModel, MemoryError, RuntimeError):
                pass  # not traceable as a whole: its children may be
        for child, sub in module.named_children():
            visit(f"{name}.{child}" if name else child, sub)

    for child, sub in model.named_children():
        visit(child, sub)
    return found


def island_graph(model: nn.Module, example_input: torch.Tensor, name: str) -> tuple[Bounded, tp.DependencyGraph]:
    """The dependency graph of island ``name`` of ``model`` (for surgery), traced on what it sees now."""
    examples = record_examples(model, example_input)
    if name not in examples:
        raise ValueError(f"island {name!r} is not called once with one tensor in and out in this model")
    bounded = Bounded(model.get_submodule(name), examples[name])
    return bounded, dependency_graph(bounded, examples[name].input)

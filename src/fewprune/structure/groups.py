"""Prunable groups: sets of coupled units (channels or attention heads) removed together.

A group is plain data: an id (the root module's name), its number of units,
and its *slices* — for each parameter the group touches, which indices along
which dimension belong to each unit. Criteria score units from slices; the
cost model and the masks use them too. Only ``surgery`` changes shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .graph import dependency_graph, is_in_fn, is_out_fn, memory_guard, torch_pruning_errors

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class Slice:
    """Indices of ``module.param`` along ``dim`` that belong to each unit of a group."""

    module: str
    param: str  # "weight" or "bias"
    dim: int
    role: str  # "out": the unit's own output; "in": a consumer reading the unit; "norm": its BN/LN parameters
    units: list[list[int]]


@dataclass
class Group:
    id: str
    kind: str  # "channels" or "heads"
    size: int
    slices: list[Slice] = field(default_factory=list)
    min_keep: int = 1
    protected: bool = False
    reason: str = ""  # why it is protected

    def describe(self) -> str:
        members = sorted({s.module for s in self.slices})
        return f"{self.id} ({self.kind}, {self.size} units; {len(members)} layers)"


def _units(root_idxs, idxs, n_units: int) -> list[list[int]]:
    units: list[list[int]] = [[] for _ in range(n_units)]
    for r, i in zip(root_idxs, idxs, strict=True):
        units[int(r)].append(int(i))
    return units


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Self-attention modules fewprune prunes by whole heads: a ``num_heads`` attribute, ``qkv`` and ``proj`` linears."""
    return {
        name: m for name, m in model.named_modules()
        if isinstance(getattr(m, "num_heads", None), int)
        and isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "proj", None), nn.Linear)
    }


def head_group(name: str, attn: nn.Module) -> Group:
    """Heads of one attention module: q, k and v rows of ``qkv`` plus the matching input columns of ``proj``."""
    heads = attn.num_heads
    inner = attn.qkv.out_features // 3
    width = inner // heads
    rows = [[part * inner + h * width + j for part in range(3) for j in range(width)] for h in range(heads)]
    cols = [[h * width + j for j in range(width)] for h in range(heads)]
    slices = [Slice(f"{name}.qkv", "weight", 0, "out", rows), Slice(f"{name}.proj", "weight", 1, "in", cols)]
    if attn.qkv.bias is not None:
        slices.append(Slice(f"{name}.qkv", "bias", 0, "out", rows))
    return Group(id=name, kind="heads", size=heads, slices=slices)


def output_layers(model: nn.Module, graph) -> set[str]:
    """The layers whose output channels are the model's outputs (the classifier).

    Walks the traced graph back from its outputs through parameter-free
    operations (activations, pooling, reshapes, normalisation) and stops at
    the first convolution or linear layer on each path: SqueezeNet's final
    1×1 conv is found as surely as a ResNet's ``fc``. Falls back to the last
    Linear when the trace has no output node.
    """
    names = {m: n for n, m in model.named_modules()}
    found: set[str] = set()
    seen: set[int] = set()
    stack = [node for node in graph.module2node.values() if not node.outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, PRUNABLE_TYPES) and node.module in names:
            found.add(names[node.module])
        else:
            stack.extend(node.inputs)
    if not found:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        found = set(linears[-1:])
    return found


def find_groups(model: nn.Module, example_input: torch.Tensor, protected: set[str] | None = None,
                protect_features: bool = False) -> list[Group]:
    """All prunable groups of ``model``, including protected ones (flagged, with the reason).

    ``protected`` names modules whose output width must stay; the classifier
    (every layer that produces the model's output, see :func:`output_layers`)
    always is. With ``protect_features`` the group feeding the classifier (the
    pre-pooling feature width) is protected too.
    """
    names = {m: n for n, m in model.named_modules()}
    param_names = {id(p): n for n, p in model.named_parameters()}
    graph = dependency_graph(model, example_input)
    heads = output_layers(model, graph)
    protected = set(protected or ()) | heads
    attention = attention_modules(model)
    attention_linears = {f"{a}.{p}" for a in attention for p in ("qkv", "proj")}

    groups: list[Group] = []
    with memory_guard(f"grouping the channels of {type(model).__name__}",
                      "torch-pruning expands its channel index mappings through every reshape of the model, "
                      "and this model has too many for this machine's memory (MaxViT and Swin do)"):
        with torch_pruning_errors(model, "group"):
            tp_groups = list(graph.get_all_groups(ignored_layers=[], root_module_types=PRUNABLE_TYPES))
    for tp_group in tp_groups:
        root = names[tp_group[0].dep.target.module]
        n_units = len(tp_group[0].idxs)
        group = Group(id=root, kind="channels", size=n_units)
        for item in tp_group:
            dep = item.dep
            module = dep.target.module
            if isinstance(module, nn.Parameter):
                name = param_names.get(id(module), "a parameter outside any supported layer")
                group.protected, group.reason = True, f"couples {name}, a parameter no supported layer owns"
                continue
            name = names.get(module)
            if name is None:  # element-wise ops of the trace carry no parameters
                continue
            units = _units(item.root_idxs, item.idxs, n_units)
            groups_of = getattr(module, "groups", 1)
            if isinstance(groups_of, int) and groups_of > 1 and not (module.in_channels == module.out_channels == groups_of):
                group.protected, group.reason = True, f"{name} is a grouped convolution (only depthwise is supported)"
            if is_out_fn(dep.handler):
                if name in protected:
                    group.protected, group.reason = True, f"{name} is protected"
                if name in attention_linears:
                    group.protected, group.reason = True, f"{name} belongs to attention (pruned by heads)"
                if isinstance(module, PRUNABLE_TYPES):
                    group.slices.append(Slice(name, "weight", 0, "out", units))
                    if module.bias is not None:
                        group.slices.append(Slice(name, "bias", 0, "out", units))
                elif getattr(module, "weight", None) is not None and module.weight.ndim == 1:
                    group.slices.append(Slice(name, "weight", 0, "norm", units))
                    if getattr(module, "bias", None) is not None:
                        group.slices.append(Slice(name, "bias", 0, "norm", units))
                    if isinstance(module, nn.LayerNorm | nn.GroupNorm):
                        # Removing a channel changes these layers' statistics: fine for pruning,
                        # but keep ViT/ConvNeXt residual streams out unless asked.
                        group.protected, group.reason = True, f"{name} normalises across channels"
                elif not isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
                    group.protected, group.reason = True, f"{name} ({type(module).__name__}) has coupled parameters"
            elif is_in_fn(dep.handler) and isinstance(module, PRUNABLE_TYPES):
                group.slices.append(Slice(name, "weight", 1, "in", units))
                if protect_features and name in heads:
                    group.protected, group.reason = True, "pre-pooling feature width is kept for feature mimicking"
        if group.slices:
            groups.append(group)
    for name, attn in attention.items():
        group = head_group(name, attn)
        if name in protected:
            group.protected, group.reason = True, f"{name} is protected"
        groups.append(group)
    return groups

"""Applying a Plan: the only place in fewprune that changes a model's shapes."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..devices import model_device
from .blocks import drop_blocks
from .graph import dependency_graph
from .groups import Group, traced_islands
from .islands import island_graph
from .plan import Plan


def _keep(size: int, removed: list[int]) -> torch.Tensor:
    gone = set(removed)
    return torch.tensor([i for i in range(size) if i not in gone], dtype=torch.long)


ATTENTION_WIDTH_ATTRIBUTES = ("attn_dim", "all_head_size", "inner_dim")  # timm, Hugging Face, common names


def prune_heads(attn: nn.Module, removed: list[int]) -> None:
    """Remove whole heads from an attention module with ``num_heads``, ``qkv`` and ``proj``."""
    heads = attn.num_heads
    if len(set(removed)) >= heads:
        raise ValueError("cannot remove every head of an attention module")
    inner = attn.qkv.out_features // 3
    width = inner // heads
    kept_heads = _keep(heads, removed)
    cols = (kept_heads[:, None] * width + torch.arange(width)).flatten()
    rows = torch.cat([part * inner + cols for part in range(3)])
    qkv, proj = attn.qkv, attn.proj
    new_qkv = nn.Linear(qkv.in_features, len(rows), bias=qkv.bias is not None)
    new_proj = nn.Linear(len(cols), proj.out_features, bias=proj.bias is not None)
    with torch.no_grad():
        new_qkv.weight.copy_(qkv.weight[rows])
        if qkv.bias is not None:
            new_qkv.bias.copy_(qkv.bias[rows])
        new_proj.weight.copy_(proj.weight[:, cols])
        if proj.bias is not None:
            new_proj.bias.copy_(proj.bias)
    # each new layer takes its predecessor's device and dtype
    attn.qkv, attn.proj, attn.num_heads = (new_qkv.to(qkv.weight.device, qkv.weight.dtype),
                                           new_proj.to(proj.weight.device, proj.weight.dtype), len(kept_heads))
    for width_name in ATTENTION_WIDTH_ATTRIBUTES:  # a stored width of all heads together (timm's attn_dim) follows
        if getattr(attn, width_name, None) == inner:
            setattr(attn, width_name, len(cols))


def apply_plan(model: nn.Module, plan: Plan) -> nn.Module:
    """Drop the plan's blocks, remove its heads, then its channels (through the dependency graph), in place.

    A model traced by islands is pruned island by island, each through its own graph.

    Pruning replaces parameters with smaller ones; each keeps its original ``requires_grad`` flag.
    """
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    example = plan.example_input(model_device(model))
    drop_blocks(model, plan.dropped_blocks)
    for gid, removed in plan.removed.items():
        if removed and plan.kinds[gid] == "heads":
            prune_heads(model.get_submodule(gid), removed)
    channel_items = [(g, r) for g, r in plan.removed.items() if r and plan.kinds[g] == "channels"]
    islands = traced_islands(model, example) if plan.islands == "auto" else plan.islands
    graphs: dict[str, object] = {}  # per island ("" for the whole model), traced when first needed
    for gid, removed in channel_items:
        try:
            module = model.get_submodule(gid)
        except AttributeError:
            raise KeyError(f"plan names group {gid!r}, which this model does not have") from None
        island = "" if islands is None else max((i for i in islands if gid == i or gid.startswith(i + ".")),
                                                key=len, default=None)
        if island is None:
            raise ValueError(f"plan prunes {gid}, which lies in none of the traced islands {islands}")
        if island not in graphs:
            graphs[island] = dependency_graph(model, example) if island == "" else \
                island_graph(model, example, island)[1]
        graph = graphs[island]
        pruner = graph.get_pruner_of_module(module)
        if pruner is None:
            raise ValueError(f"{gid} ({type(module).__name__}) is not a layer fewprune can prune")
        width = pruner.get_out_channels(module)
        if width != plan.sizes[gid]:
            raise ValueError(f"plan expects {plan.sizes[gid]} channels at {gid}, the model has {width}")
        graph.get_pruning_group(module, pruner.prune_out_channels, sorted(removed)).prune()
    for name, p in model.named_parameters():
        p.requires_grad_(flags.get(name, True))
    return model


def masked_copy(model: nn.Module, plan: Plan, groups: list[Group]) -> nn.Module:
    """A copy of ``model`` where the plan's units are silenced by zeroing every weight that reads them.

    Consumers no longer see a removed channel or head, so this copy computes what
    the physically pruned model computes; dropped blocks get all their parameters
    zeroed (a residual block with a zero branch is the identity).
    """
    return silence(copy.deepcopy(model), plan, groups)


def silence(model: nn.Module, plan: Plan, groups: list[Group]) -> nn.Module:
    """Zero, in place, every weight of ``model`` that reads a unit the plan removes (see :func:`masked_copy`)."""
    by_id = {g.id: g for g in groups}
    with torch.no_grad():
        for gid, removed in plan.removed.items():
            for s in by_id[gid].slices:
                if s.role != "in":
                    continue
                param = getattr(model.get_submodule(s.module), s.param)
                idx = torch.tensor([i for u in removed for i in s.units[u]], dtype=torch.long, device=param.device)
                param.index_fill_(s.dim, idx, 0.0)
        for block in plan.dropped_blocks:
            for p in model.get_submodule(block).parameters():
                p.zero_()
    return model


class Silencer:
    """Silenced versions of one model, one at a time, in a single reused copy.

    ``silencer(plan)`` restores the copy to the model's state and silences the
    plan's units in it: what :func:`masked_copy` returns, without copying a
    module tree per call (a step-wise allocator asks for hundreds). The
    returned module is only valid until the next call; the model is not touched.
    """

    def __init__(self, model: nn.Module, groups: list[Group]):
        self.model, self.groups = model, groups
        self.scratch: nn.Module | None = None  # copied on first use

    def __call__(self, plan: Plan) -> nn.Module:
        if self.scratch is None:
            self.scratch = copy.deepcopy(self.model)
        with torch.no_grad():
            for target, source in zip(self.scratch.state_dict().values(), self.model.state_dict().values(),
                                      strict=True):
                target.copy_(source)
        return silence(self.scratch, plan, self.groups)

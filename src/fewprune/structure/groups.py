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

from .graph import (
    PRUNABLE_TYPES,
    UnsupportedModel,
    dependency_graph,
    is_in_fn,
    is_out_fn,
    memory_guard,
    torch_pruning_errors,
)
from .islands import IslandExample, find_islands, record_examples, trace_island


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


HEAD_SHARED_LAYERS = ("q_norm", "k_norm")  # timm's per-head-dim norms: shared by every head, kept as they are


def _attention_like(m: nn.Module) -> bool:
    return (isinstance(getattr(m, "num_heads", None), int)
            and isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "proj", None), nn.Linear))


def _unsliceable_layers(m: nn.Module) -> list[str]:
    """Layers of an attention module, besides qkv, proj and the per-head-dim norms, that hold parameters: they may
    work at the attention's width (timm's gate and scale norm), which fewprune cannot slice by head."""
    return [n for n, child in m.named_children()
            if n not in ("qkv", "proj", *HEAD_SHARED_LAYERS) and any(True for _ in child.parameters())]


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Self-attention modules fewprune prunes by whole heads: a ``num_heads`` attribute, ``qkv`` and ``proj`` linears,
    and no other layer at the attention's width (q/k norms over one head's width are shared by all heads)."""
    return {
        name: m for name, m in model.named_modules()
        if _attention_like(m)
        # a parameter of its own (Swin's relative position bias table) may be per head: not ours to slice
        and not any(True for _ in m.parameters(recurse=False))
        and not _unsliceable_layers(m)
    }


def unsliceable_attention(model: nn.Module) -> dict[str, str]:
    """Modules with a ``num_heads`` that fewprune does not prune by heads: name → why.

    The output channels of their own linear layers are kept (they are split into heads by a reshape that
    pruning them would break)."""
    sliced = attention_modules(model)
    found = {}
    for name, m in model.named_modules():
        if not isinstance(getattr(m, "num_heads", None), int) or name in sliced:
            continue
        if not _attention_like(m):
            found[name] = "heads are not laid out as one qkv and one proj layer"
        elif any(True for _ in m.parameters(recurse=False)):
            found[name] = "own parameters may be per head"
        else:
            found[name] = f"{', '.join(_unsliceable_layers(m))} cannot be sliced by head"
    return found


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


# The parts each model was traced by: None for the whole model, else its islands. Keyed by the model's
# architecture (module names and types, not widths) and input shape, so an iterative method re-tracing a
# model that torch-pruning cannot trace whole does not pay for the failing attempt again.
_LAYOUTS: dict[tuple, list[str] | None] = {}
_UNKNOWN = object()
BOUNDARY = "<island boundary>"  # the name given to an island's boundary layers while grouping


def _layout_key(model: nn.Module, example_input: torch.Tensor) -> tuple:
    return (tuple((n, type(m).__qualname__) for n, m in model.named_modules()), tuple(example_input.shape[1:]))


def traced_islands(model: nn.Module, example_input: torch.Tensor) -> list[str] | None:
    """How ``find_groups`` traced this architecture: None (whole) or its islands' names (see :mod:`.islands`)."""
    key = _layout_key(model, example_input)
    if key not in _LAYOUTS:
        find_groups(model, example_input)
    return _LAYOUTS[key]


def find_groups(model: nn.Module, example_input: torch.Tensor, protected: set[str] | None = None,
                protect_features: bool = False) -> list[Group]:
    """All prunable groups of ``model``, including protected ones (flagged, with the reason).

    ``protected`` names modules whose output width must stay; the classifier
    (every layer that produces the model's output, see :func:`output_layers`)
    always is. With ``protect_features`` the group feeding the classifier (the
    pre-pooling feature width) is protected too.

    A model torch-pruning cannot trace whole is traced by islands
    (:mod:`.islands`): only the channels inside them are prunable, the rest
    are left as they are; the error is raised only when no island has any.
    """
    protected = set(protected or ())
    key = _layout_key(model, example_input)
    layout = _LAYOUTS.get(key, _UNKNOWN)
    by_island: dict[str, list[Group]] = {}  # each island's groups, traced once per call
    if layout is None or layout is _UNKNOWN:
        try:
            groups = _whole_model_groups(model, example_input, protected, protect_features)
            _LAYOUTS[key] = None
            return groups
        except (UnsupportedModel, MemoryError):
            if layout is None:  # this architecture traced whole before: the failure is real
                raise

            def has_inner_groups(name: str, module: nn.Module, example: IslandExample) -> bool:
                by_island[name] = _island_groups(name, module, example, protected)
                return any(not g.protected for g in by_island[name])

            islands = find_islands(model, example_input, has_inner_groups)
            if not islands:
                raise
            _LAYOUTS[key] = islands
    else:  # the layout is known: trace its islands on what they see in this model
        examples = record_examples(model, example_input)
        by_island = {name: _island_groups(name, model.get_submodule(name), examples[name], protected)
                     for name in layout}
    groups = [g for name in _LAYOUTS[key] for g in by_island[name]]
    return groups + _head_groups(model, protected, inside=_LAYOUTS[key])


def _whole_model_groups(model: nn.Module, example_input: torch.Tensor, protected: set[str],
                        protect_features: bool) -> list[Group]:
    names = {m: n for n, m in model.named_modules()}
    graph = dependency_graph(model, example_input)
    heads = output_layers(model, graph)
    with memory_guard(f"grouping the channels of {type(model).__name__}",
                      "torch-pruning expands its channel index mappings through every reshape of the model, "
                      "and this model has too many for this machine's memory (MaxViT and Swin do)"):
        with torch_pruning_errors(model, "group"):
            tp_groups = list(graph.get_all_groups(ignored_layers=[], root_module_types=PRUNABLE_TYPES))
    features = _feature_readers(model, example_input, heads) if protect_features else set()
    groups = _from_torch_pruning(model, tp_groups, names, protected | heads, features)
    return groups + _head_groups(model, protected | heads)


def _feature_readers(model: nn.Module, example_input: torch.Tensor, heads: set[str]) -> set[str]:
    """The layers whose input widths feature mimicking needs kept: every layer of the head after the pre-pooling
    features (MiR's frozen head: MobileNetV3's two-layer classifier, a segmentation decoder), and the output
    layers. Where no feature layer can be found, the output layers alone."""
    from ..models.features import feature_layer, modules_after

    try:
        layer = feature_layer(model, example_input)
        return set(modules_after(model, layer, example_input)) | heads
    except ValueError:
        return heads


def _island_groups(name: str, module: nn.Module, example: IslandExample, protected: set[str]) -> list[Group]:
    """The groups of one island, named in the whole model; those reaching its boundary are protected."""
    bounded, _graph, tp_groups = trace_island(module, example)
    names = {}
    for inner, m in bounded.named_modules():
        if inner in ("enter", "leave"):
            names[m] = BOUNDARY
        elif inner == "island" or inner.startswith("island."):
            names[m] = name + inner[len("island"):]
    return [g for g in _from_torch_pruning(bounded, tp_groups, names, protected, set(), island=name)
            if g.id != BOUNDARY]


def _head_groups(model: nn.Module, protected: set[str], inside: list[str] | None = None) -> list[Group]:
    """Head groups of the attention modules (inside the traced islands, when the model was traced by islands)."""
    groups = []
    for name, attn in attention_modules(model).items():
        if inside is not None and not any(name == i or name.startswith(i + ".") for i in inside):
            continue
        group = head_group(name, attn)
        if name in protected:
            group.protected, group.reason = True, f"{name} is protected"
        groups.append(group)
    return groups


def _from_torch_pruning(model: nn.Module, tp_groups, names: dict, protected: set[str], features: set[str],
                        island: str | None = None) -> list[Group]:
    """fewprune groups from torch-pruning's: slices per parameter, protection with its reason."""
    param_names = {id(p): n for n, p in model.named_parameters()}
    attention_linears = {f"{a}.{p}": f"{a}.{p} belongs to attention (pruned by heads)"
                         for a in attention_modules(model) for p in ("qkv", "proj")}
    for attn, why in unsliceable_attention(model).items():
        for child, layer in model.get_submodule(attn).named_children():
            if isinstance(layer, PRUNABLE_TYPES):
                name = f"{attn}.{child}" if attn else child
                attention_linears[name] = f"{name} belongs to attention {attn or 'the model'}, not pruned by heads: {why}"
    if island is not None:
        attention_linears = {f"{island}{a[len('island'):]}": why for a, why in attention_linears.items()}
    groups: list[Group] = []
    for tp_group in tp_groups:
        root = names.get(tp_group[0].dep.target.module, BOUNDARY)
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
            if name == BOUNDARY:
                group.protected = True
                group.reason = f"reaches the channels entering or leaving {island}, which are kept as they are"
                continue
            if any(r is None for r in item.root_idxs):  # torch-pruning lost the index mapping (timm's EvoNorm)
                group.protected, group.reason = True, f"torch-pruning cannot map the channels of {name} to the group's"
                continue
            units = _units(item.root_idxs, item.idxs, n_units)
            groups_of = getattr(module, "groups", 1)
            if isinstance(groups_of, int) and groups_of > 1 and not (module.in_channels == module.out_channels == groups_of):
                group.protected, group.reason = True, f"{name} is a grouped convolution (only depthwise is supported)"
            if is_out_fn(dep.handler):
                if name in protected:
                    group.protected, group.reason = True, f"{name} is protected"
                if name in attention_linears:
                    group.protected, group.reason = True, attention_linears[name]
                if isinstance(module, PRUNABLE_TYPES):
                    extra = [n for n, _ in module.named_parameters(recurse=False) if n not in ("weight", "bias")]
                    if extra:  # e.g. timm's ScaledStdConv2d gain: torch-pruning would leave it at the old width
                        group.protected = True
                        group.reason = f"{name} ({type(module).__name__}) has parameters fewprune does not slice: " \
                                       + ", ".join(extra)
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
                if name in features:
                    group.protected = True
                    group.reason = (f"{name} reads the pre-pooling features (or the head's own channels after them), "
                                    "kept for feature mimicking")
        if group.slices:
            groups.append(group)
    return groups

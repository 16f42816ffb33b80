"""An analytic model of MACs and parameters as a function of group widths and dropped blocks.

Allocation searches many candidate widths (CMa's differential evolution
thousands), so candidates are costed from per-layer counts measured once on
the real model, not by rebuilding and re-counting. Each conv/linear costs its
measured MACs × (kept inputs fraction) × (kept outputs fraction); an attention
module's own MACs (q·kᵀ, a·v) scale with its kept heads. Tests check the model
against real counts of pruned students.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from ..metrics.complexity import counted_forward
from .groups import PRUNABLE_TYPES, Group


@dataclass
class _Term:
    """One layer's (or parameter's) count and the groups that own slices of its output and input dims.

    ``outputs``/``inputs`` list ``(group id, channels covered)``: a DenseNet
    conv reads a concatenation of many groups, each covering its own share.
    """

    name: str
    amount: int
    outputs: tuple[tuple[str, int], ...] = ()
    out_total: int = 1
    inputs: tuple[tuple[str, int], ...] = ()
    in_total: int = 1


@dataclass
class CostModel:
    mac_terms: list[_Term] = field(default_factory=list)
    param_terms: list[_Term] = field(default_factory=list)
    group_sizes: dict[str, int] = field(default_factory=dict)
    base_macs: int = 0
    base_params: int = 0

    @classmethod
    def measure(cls, model: nn.Module, example_input: torch.Tensor, groups: list[Group]) -> CostModel:
        counter = counted_forward(model, example_input[:1])
        per_module = {k.split(".", 1)[1] if "." in k else "": sum(v.values()) // 2
                      for k, v in counter.get_flop_counts().items() if k != "Global"}
        outs: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)  # (module, param) -> owners
        ins: dict[str, list[tuple[str, int]]] = defaultdict(list)
        heads: set[str] = set()
        for g in groups:
            if g.kind == "heads":
                heads.add(g.id)
            for s in g.slices:
                covered = sum(len(u) for u in s.units)
                if s.role in ("out", "norm"):
                    outs[(s.module, s.param)].append((g.id, covered))
                elif s.role == "in":
                    ins[s.module].append((g.id, covered))
        model_cost = cls(group_sizes={g.id: g.size for g in groups})
        accounted = 0
        for name, module in model.named_modules():
            own_params = {n: p for n, p in module.named_parameters(recurse=False)}
            depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
            if isinstance(module, PRUNABLE_TYPES):
                macs = per_module.get(name, 0)
                accounted += macs
                weight = module.weight
                model_cost.mac_terms.append(_Term(name, macs, tuple(outs[(name, "weight")]), weight.shape[0],
                                                  () if depthwise else tuple(ins[name]), weight.shape[1]))
            elif name in heads:
                children = sum(per_module.get(f"{name}.{c}", 0) for c, _ in module.named_children())
                core = per_module.get(name, 0) - children
                accounted += core
                size = model_cost.group_sizes[name]
                model_cost.mac_terms.append(_Term(name + ".<attention>", core, ((name, size),), size))
            for pname, p in own_params.items():
                reads = pname == "weight" and not depthwise and p.ndim > 1
                model_cost.param_terms.append(_Term(
                    f"{name}.{pname}", p.numel(), tuple(outs[(name, pname)]), p.shape[0] if p.ndim else 1,
                    tuple(ins[name]) if reads else (), p.shape[1] if reads else 1))
        total = counter.get_total_flops() // 2
        model_cost.mac_terms.append(_Term("<other>", total - accounted))
        model_cost.base_macs = total
        model_cost.base_params = sum(t.amount for t in model_cost.param_terms)
        return model_cost

    def _kept(self, owners: tuple[tuple[str, int], ...], total: int, keep: dict[str, int]) -> float:
        """The fraction of a dim of ``total`` channels left when each owner keeps ``keep[id]`` of its units."""
        gone = sum(covered * (1 - keep[g] / self.group_sizes[g]) for g, covered in owners if g in keep)
        return 1 - gone / total

    def _sum(self, terms: list[_Term], keep: dict[str, int], dropped: tuple[str, ...]) -> float:
        total = 0.0
        for t in terms:
            if dropped and any(t.name.startswith(b + ".") for b in dropped):
                continue
            f = self._kept(t.outputs, t.out_total, keep) if t.outputs else 1.0
            if t.inputs:
                f *= self._kept(t.inputs, t.in_total, keep)
            total += t.amount * f
        return total

    def macs(self, keep: dict[str, int], dropped: tuple[str, ...] = ()) -> float:
        """MACs (per example) when each group keeps ``keep[id]`` units and ``dropped`` blocks are gone."""
        return self._sum(self.mac_terms, keep, tuple(dropped))

    def params(self, keep: dict[str, int], dropped: tuple[str, ...] = ()) -> float:
        return self._sum(self.param_terms, keep, tuple(dropped))

"""An analytic model of MACs and parameters as a function of group widths and dropped blocks.

Allocation searches many candidate widths (CMa's differential evolution
thousands), so candidates are costed from per-layer counts measured once on
the real model, not by rebuilding and re-counting. Each conv/linear costs its
measured MACs × (kept inputs fraction) × (kept outputs fraction); an attention
module's own MACs (q·kᵀ, a·v) scale with its kept heads. Tests check the model
against real counts of pruned students.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..metrics.complexity import _custom_mapping
from ..modes import eval_mode
from .groups import PRUNABLE_TYPES, Group


@dataclass
class _Term:
    name: str
    amount: int
    out_group: str | None = None
    in_group: str | None = None


@dataclass
class CostModel:
    mac_terms: list[_Term] = field(default_factory=list)
    param_terms: list[_Term] = field(default_factory=list)
    group_sizes: dict[str, int] = field(default_factory=dict)
    base_macs: int = 0
    base_params: int = 0

    @classmethod
    def measure(cls, model: nn.Module, example_input: torch.Tensor, groups: list[Group]) -> CostModel:
        counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
        with eval_mode(model), counter, torch.no_grad():
            model(example_input[:1])
        per_module = {k.split(".", 1)[1] if "." in k else "": sum(v.values()) // 2
                      for k, v in counter.get_flop_counts().items() if k != "Global"}
        out_of: dict[tuple[str, str], str] = {}  # (module, param) -> group controlling its outputs
        in_of: dict[str, str] = {}
        head_of: dict[str, str] = {}
        for g in groups:
            if g.kind == "heads":
                head_of[g.id] = g.id
            for s in g.slices:
                if s.role in ("out", "norm"):
                    out_of[(s.module, s.param)] = g.id
                elif s.role == "in":
                    in_of[s.module] = g.id
        model_cost = cls(group_sizes={g.id: g.size for g in groups})
        accounted = 0
        for name, module in model.named_modules():
            own_params = {n: p for n, p in module.named_parameters(recurse=False)}
            if isinstance(module, PRUNABLE_TYPES):
                macs = per_module.get(name, 0)
                accounted += macs
                depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
                in_group = None if depthwise else in_of.get(name)
                model_cost.mac_terms.append(_Term(name, macs, out_of.get((name, "weight")), in_group))
            elif name in head_of:
                children = sum(per_module.get(f"{name}.{c}", 0) for c, _ in module.named_children())
                core = per_module.get(name, 0) - children
                accounted += core
                model_cost.mac_terms.append(_Term(name + ".<attention>", core, name, None))
            for pname, p in own_params.items():
                depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
                in_group = in_of.get(name) if pname == "weight" and not depthwise else None
                model_cost.param_terms.append(_Term(f"{name}.{pname}", p.numel(), out_of.get((name, pname)), in_group))
        total = counter.get_total_flops() // 2
        model_cost.mac_terms.append(_Term("<other>", total - accounted))
        model_cost.base_macs = total
        model_cost.base_params = sum(t.amount for t in model_cost.param_terms)
        return model_cost

    def _sum(self, terms: list[_Term], keep: dict[str, int], dropped: tuple[str, ...]) -> float:
        total = 0.0
        for t in terms:
            if dropped and any(t.name.startswith(b + ".") for b in dropped):
                continue
            f = 1.0
            if t.out_group is not None and t.out_group in keep:
                f *= keep[t.out_group] / self.group_sizes[t.out_group]
            if t.in_group is not None and t.in_group in keep:
                f *= keep[t.in_group] / self.group_sizes[t.in_group]
            total += t.amount * f
        return total

    def macs(self, keep: dict[str, int], dropped: tuple[str, ...] = ()) -> float:
        """MACs (per example) when each group keeps ``keep[id]`` units and ``dropped`` blocks are gone."""
        return self._sum(self.mac_terms, keep, tuple(dropped))

    def params(self, keep: dict[str, int], dropped: tuple[str, ...] = ()) -> float:
        return self._sum(self.param_terms, keep, tuple(dropped))

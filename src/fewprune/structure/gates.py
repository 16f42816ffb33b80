"""Static channel gates: one learnable gate per unit of every prunable group, for mask-learning methods (ASCA).

A gate scales what a unit's consumers read from it, exactly where
:func:`~fewprune.structure.masked_copy` writes zeros (the groups' ``in``
slices), so a gated model with gates at 0/1 computes what the physically
pruned model computes. Gates are input-independent (one mask for all inputs).
They are attached as weight parametrizations for the duration of a ``with``
block and removed after, leaving the model's parameters, classes and
``state_dict`` keys exactly as they were.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .groups import Group


class _ScaleInputs(nn.Module):
    """Multiplies a weight along its input dimension by the gates of the units it reads."""

    def __init__(self, gates: ChannelGates, dim: int, parts: list[tuple[str, torch.Tensor, torch.Tensor]]):
        super().__init__()
        self.dim = dim
        self.parts = parts  # (group id, weight indices, unit of each index)
        self.__dict__["source"] = gates  # a plain reference: the gates are not the model's parameters

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        values = self.source.values()
        scale = torch.ones(weight.shape[self.dim], dtype=weight.dtype, device=weight.device)
        for gid, indices, units in self.parts:
            # gates stay on the CPU beside the cost model; each weight takes its gates where it lives
            scale = scale.index_put((indices.to(weight.device),), values[gid][units].to(weight.device, weight.dtype))
        shape = [1] * weight.ndim
        shape[self.dim] = -1
        return weight * scale.view(shape)


class ChannelGates:
    """Gates ``sigmoid((logit + offset) / temperature)`` on the units of ``groups``, active inside ``with``.

    ``logits`` (one ``nn.Parameter`` per group, initialised to ``init``) are
    what a mask-learning loop optimises; ``offset`` is one shift shared by
    every gate (a budget projection sets it); ``fixed`` replaces the gates by
    given values (for example binary 0/1 masks) while it is set.
    """

    def __init__(self, model: nn.Module, groups: list[Group], init: float = 3.0, temperature: float = 1.0):
        self.model = model
        self.groups = [g for g in groups if not g.protected]
        self.logits = {g.id: nn.Parameter(torch.full((g.size,), float(init))) for g in self.groups}
        self.temperature = temperature
        self.offset = 0.0
        self.fixed: dict[str, torch.Tensor] | None = None
        self.bake = False  # set before leaving to fold the current gate values into the consumers' weights
        self._attached: list[tuple[nn.Module, str, list[str]]] = []

    def values(self) -> dict[str, torch.Tensor]:
        """The current gate of every unit, per group (in [0, 1])."""
        if self.fixed is not None:
            return self.fixed
        return {gid: torch.sigmoid((logit + self.offset) / self.temperature) for gid, logit in self.logits.items()}

    def parameters(self) -> list[nn.Parameter]:
        return list(self.logits.values())

    def soft_keep(self) -> dict[str, torch.Tensor]:
        """Expected kept units per group (differentiable), for a cost model's budget."""
        return {gid: v.sum() for gid, v in self.values().items()}

    def __enter__(self) -> ChannelGates:
        by_param: dict[tuple[str, str, int], list] = {}
        for g in self.groups:
            for s in g.slices:
                if s.role != "in":
                    continue
                indices = torch.tensor([i for u in s.units for i in u], dtype=torch.long)
                units = torch.tensor([k for k, u in enumerate(s.units) for _ in u], dtype=torch.long)
                by_param.setdefault((s.module, s.param, s.dim), []).append((g.id, indices, units))
        try:
            for (module_name, param, dim), parts in by_param.items():
                module = self.model.get_submodule(module_name)
                if not any(m is module and p == param for m, p, _ in self._attached):
                    self._attached.append((module, param, list(module._parameters)))
                parametrize.register_parametrization(module, param, _ScaleInputs(self, dim, parts), unsafe=True)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        # leave_parametrized=False puts the original Parameter objects back, untouched; re-registering
        # appends them, so the parameters' order (state_dict keys, optimiser order) is restored too.
        # With ``bake`` the gated weights stay instead (gates and weights trained together, ASCA from scratch).
        for module, param, order in reversed(self._attached):
            if parametrize.is_parametrized(module, param):
                with torch.no_grad():
                    parametrize.remove_parametrizations(module, param, leave_parametrized=self.bake)
            for name in order:
                module._parameters[name] = module._parameters.pop(name)
        self._attached.clear()

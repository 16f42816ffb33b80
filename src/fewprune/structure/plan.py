"""The pruning decision as plain, JSON-serialisable data."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

PLAN_FORMAT = 1


@dataclass
class Plan:
    """Which units of which groups are removed and which blocks are dropped.

    ``removed`` maps a group id (its root module's name) to the removed unit
    indices, ``kinds`` says whether those units are channels or attention heads.
    ``apply`` is deterministic: architecture + plan + weights = the student.
    """

    input_shape: tuple[int, ...]
    removed: dict[str, list[int]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    dropped_blocks: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    # How the channels' dependencies are traced: None for the whole model, else the islands' names
    # (see structure.islands); "auto" finds out on the model the plan is applied to.
    islands: list[str] | None | str = "auto"

    def example_input(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.zeros(1, *self.input_shape, device=device)

    def apply(self, model: nn.Module) -> nn.Module:
        """Physically prune ``model`` in place (see :mod:`fewprune.structure.surgery`) and return it."""
        from .surgery import apply_plan

        return apply_plan(model, self)

    @property
    def is_empty(self) -> bool:
        return not self.dropped_blocks and not any(self.removed.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["format"] = PLAN_FORMAT
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        if d.get("format") != PLAN_FORMAT:
            raise ValueError(f"unsupported plan format {d.get('format')!r} (this fewprune reads {PLAN_FORMAT})")
        return cls(
            input_shape=tuple(d["input_shape"]),
            removed={k: [int(i) for i in v] for k, v in d["removed"].items()},
            kinds=dict(d["kinds"]),
            sizes={k: int(v) for k, v in d["sizes"].items()},
            dropped_blocks=list(d["dropped_blocks"]),
            meta=dict(d.get("meta", {})),
            islands=d.get("islands"),  # plans from before islands existed traced the whole model
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))

    @classmethod
    def read(cls, path: str | Path) -> Plan:
        return cls.from_json(Path(path).read_text())

    def summary(self) -> list[tuple[str, str, int, int]]:
        """Rows ``(group, kind, width before, width after)`` for every touched group, then dropped blocks."""
        rows = [(g, self.kinds[g], self.sizes[g], self.sizes[g] - len(r)) for g, r in self.removed.items() if r]
        rows += [(b, "block", 1, 0) for b in self.dropped_blocks]
        return rows


@dataclass
class Pruned:
    """What a plan did to each layer, in index terms recoveries can use (FSKD, reconstruction).

    ``kept_outputs[layer]``: the teacher's output channels the student layer still has;
    ``kept_inputs[layer]``: the teacher's input channels it still reads, for the
    ``reduced_inputs`` layers (those whose input channels shrank); ``dropped_blocks``
    among the teacher's removable ``blocks``.
    """

    kept_outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    kept_inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # the teacher's input channels still read
    reduced_inputs: list[str] = field(default_factory=list)
    dropped_blocks: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)  # every removable block of the teacher

    @classmethod
    def from_plan(cls, plan: Plan, groups, blocks=()) -> Pruned:
        out = cls(dropped_blocks=list(plan.dropped_blocks), blocks=list(blocks))
        inputs_seen: dict[str, set[int]] = {}  # a layer may read several groups (concatenations)
        inputs_gone: dict[str, set[int]] = {}
        for g in groups:
            gone = set(plan.removed.get(g.id, ()))
            for s in g.slices:
                if s.param != "weight":
                    continue
                dropped = {i for u in gone for i in s.units[u]}
                if s.role == "out" and dropped:
                    size = sum(len(u) for u in s.units)
                    out.kept_outputs[s.module] = torch.tensor([i for i in range(size) if i not in dropped])
                elif s.role == "in":
                    inputs_seen.setdefault(s.module, set()).update(i for u in s.units for i in u)
                    inputs_gone.setdefault(s.module, set()).update(dropped)
        for module, gone in inputs_gone.items():
            if gone:
                out.reduced_inputs.append(module)
                out.kept_inputs[module] = torch.tensor(sorted(inputs_seen[module] - gone))
        return out

    def to(self, device: torch.device | str) -> Pruned:
        """The same, its index tensors on ``device`` (where the recoveries that index features with them run)."""
        return replace(self, kept_outputs={k: v.to(device) for k, v in self.kept_outputs.items()},
                       kept_inputs={k: v.to(device) for k, v in self.kept_inputs.items()})

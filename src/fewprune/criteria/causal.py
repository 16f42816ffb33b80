"""C-SWAP-style causal unit effects (Bauvin et al. 2025; the published algorithm is not public, see methods.md §4.2).

The effect of a unit n on a sample x is measured by intervention: silence n
(every layer that reads it sees zero there, exactly what removing it does) and
compare the probability of the intact model's predicted class,
``ρ_n(x) = σⁿ(x)_ŷ / σ(x)_ŷ``. Across the few samples a sign-flip permutation
test on ``log ρ_n`` (Holm-corrected within each group) sorts units into
*critical* (removal significantly hurts), *detrimental* (removal significantly
helps) and *neutral*. Critical units are locked: no allocator removes them.

Interventions are batched: the samples are replicated once per unit of a chunk
and each replicate silences its own unit through input masks on the consumer
layers. When the model traces with ``torch.fx``, everything that does not
depend on the silenced layers is computed once and reused, so only the suffix
of the network after the first consumer is re-run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..models.outputs import class_scores, main_output
from ..modes import eval_mode
from ..structure import Group, PruningSpace
from .base import Batch, Scores, register_criterion


class _SuffixRunner(fx.Interpreter):
    """Re-runs only the nodes downstream of ``changed`` modules; other nodes come from a clean run's cache."""

    def __init__(self, traced: fx.GraphModule, cache: dict[str, torch.Tensor], changed: set[str], repeats: int):
        super().__init__(traced)
        self.cache, self.repeats = cache, repeats
        dirty: set[fx.Node] = set()
        batched: set[fx.Node] = set()  # values that carry the sample dimension (descend from the input)
        for node in traced.graph.nodes:  # topological order
            inputs = node.all_input_nodes
            if node.op == "placeholder" or any(a in batched for a in inputs):
                batched.add(node)
            if (node.op == "call_module" and node.target in changed) or any(a in dirty for a in inputs):
                dirty.add(node)
        # Clean values read by the re-run part are replicated once per intervention; the others are never read.
        self.feeds_dirty = {n for n in traced.graph.nodes if n not in dirty and any(u in dirty for u in n.users)}
        self.dirty, self.batched = dirty, batched

    def run_node(self, node: fx.Node):
        if node.op == "output" or node in self.dirty or node.name not in self.cache:
            return super().run_node(node)
        value = self.cache[node.name]
        if node in self.feeds_dirty and node in self.batched and torch.is_tensor(value) and value.ndim:
            return value.repeat(self.repeats, *([1] * (value.ndim - 1)))
        return value


def _clean_run(traced: fx.GraphModule, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The intact model's output and every node's value on ``images`` (what suffix re-runs reuse)."""
    cache: dict[str, torch.Tensor] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            value = super().run_node(node)
            cache[node.name] = value
            return value

    output = Recorder(traced).run(images)
    return output, cache


def _input_width(layer: nn.Module) -> int:
    return layer.weight.shape[1] * (layer.groups if isinstance(layer, nn.Conv2d) else 1)


def _input_masks(model: nn.Module, group: Group, units: list[int] | list[list[int]], samples: int,
                 remap: dict[str, dict[int, int]] | None = None) -> dict[str, torch.Tensor]:
    """Per consumer layer, a multiplicative input mask: replicate k silences ``units[k]`` (a unit or a list).

    ``remap`` (for a physically pruned ``model``): per layer, original input index → index in ``model``.
    """
    masks: dict[str, torch.Tensor] = {}
    for s in group.slices:
        if s.role != "in" or s.param != "weight":
            continue
        mask = masks.get(s.module)
        if mask is None:
            layer = model.get_submodule(s.module)
            mask = torch.ones(len(units), _input_width(layer), device=layer.weight.device)
        for k, silenced in enumerate(units):
            for u in silenced if isinstance(silenced, list) else [silenced]:
                mask[k, s.units[u] if remap is None else [remap[s.module][i] for i in s.units[u]]] = 0.0
        masks[s.module] = mask
    return {name: m.repeat_interleave(samples, dim=0) for name, m in masks.items()}


def _apply_mask(inputs, mask: torch.Tensor, linear: bool):
    x = inputs[0]
    shaped = mask.reshape(mask.shape[0], *([1] * (x.ndim - 2)), mask.shape[1]) if linear \
        else mask.reshape(*mask.shape, *([1] * (x.ndim - 2)))
    return (x * shaped, *inputs[1:])


class SilencedOutputs:
    """``outputs(removed)``: the model's outputs on ``images`` with the ``removed`` units silenced.

    Step-wise allocators ask for many removals that extend one another (each
    trial adds a few units to the accepted removal). The outputs of one
    removal, the *base*, are computed in full and every intermediate value
    kept; a removal that extends it silences the extra units through input
    masks on their consumers, exactly as zeroed weights do, and re-runs only
    what they change (at most a full pass). A removal that does not extend the
    base becomes the new base; ``anchor(removed)`` makes one the base on purpose (allocators anchor
    at each accepted removal, which their next trials extend). Without a
    ``torch.fx`` trace every call is a full forward pass.

    With a ``compactor`` (removal → a physically pruned copy), a base with
    units removed is that pruned model, and the extra units are masked at
    their indices in it: past a few percent removed, every suffix costs what
    the pruned model costs instead of the full width. The first such base is
    checked against the silenced model (outputs and one extension); a model
    that fails the check, or does not trace pruned, keeps the full width.
    """

    def __init__(self, silencer: Callable[[dict[str, list[int]]], nn.Module], space: PruningSpace,
                 images: torch.Tensor, compactor: Callable[[dict[str, list[int]]], nn.Module] | None = None):
        self.silencer, self.images = silencer, images
        self.compactor, self.compact_checked = compactor, False
        self.remap: dict[str, dict[int, int]] | None = None  # base is compact: original → compact input indices
        self.widths: dict[str, int] | None = None  # consumers' full input widths (for the remap)
        self.groups = {g.id: g for g in space.groups}
        self.prunable = list(space.prunable)  # the compact check extends only these
        self.base: dict[str, set[int]] | None = None
        self.traced: fx.GraphModule | None = None
        self._traced_from: nn.Module | None = None  # the module traced (a Silencer returns the same one each time)
        self.cache: dict[str, torch.Tensor] = {}
        self.output: torch.Tensor | None = None
        self.full_runs = self.suffix_runs = 0
        self.pending: dict[str, list[int]] | None = None  # an anchor not yet settled (see anchor)

    @torch.no_grad()
    def __call__(self, removed: dict[str, list[int]]) -> torch.Tensor:
        if self.pending is not None:
            self._settle()
        extra = None
        if self.base is not None and all(self.base.get(g, set()) <= set(u) for g, u in removed.items()) \
                and all(g in removed for g, u in self.base.items() if u):
            extra = {g: sorted(set(u) - self.base.get(g, set())) for g, u in removed.items()}
            extra = {g: u for g, u in extra.items() if u}
        if extra is None:
            return self._rebase(removed)
        if not extra:
            return self.output
        self.suffix_runs += 1
        masks = self._masks(extra)
        handles = [self.traced.get_submodule(name).register_forward_pre_hook(
            lambda mod, inp, mask=mask: _apply_mask(inp, mask, isinstance(mod, nn.Linear)))
            for name, mask in masks.items()]
        try:
            return _SuffixRunner(self.traced, self.cache, set(masks), 1).run(self.images)
        finally:
            for h in handles:
                h.remove()

    def anchor(self, removed: dict[str, list[int]]) -> None:
        """Make ``removed`` the base (computed in full, when outputs are next asked for) unless it already
        is, so that what follows depends on this removal alone and not on the removals asked for before it.
        Deferred: a walk that never asks for outputs (plain LRP) pays nothing for anchoring."""
        self.pending = {g: list(u) for g, u in removed.items()}

    def _settle(self) -> None:
        removed, self.pending = self.pending, None
        wanted = {g: set(u) for g, u in removed.items() if u}
        if self.base is None or {g: u for g, u in self.base.items() if u} != wanted:
            self._rebase(removed)

    def _rebase(self, removed: dict[str, list[int]]) -> torch.Tensor:
        self.full_runs += 1
        if self.compactor is not None and any(removed.values()):
            output = self._rebase_compact(removed)
            if output is not None:
                return output
        self.remap = None
        model = self.silencer(removed).eval()
        if model is not self._traced_from:  # the trace shares the module's layers: new weights need no new trace
            self._traced_from = model
            try:
                self.traced = fx.symbolic_trace(model)
            except Exception:  # noqa: BLE001 — data-dependent forwards do not trace: full passes every time
                self.traced = None
        if self.traced is None:
            self.base = None
            return model(self.images)
        self.output, self.cache = _clean_run(self.traced, self.images)
        self.base = {g: set(u) for g, u in removed.items()}
        return self.output

    def _rebase_compact(self, removed: dict[str, list[int]]) -> torch.Tensor | None:
        """Make the physically pruned model of ``removed`` the base; None (and full width from now on) when it
        cannot be traced or, the first time, does not compute what the silenced model computes."""
        try:
            model = self.compactor(removed).eval()
            traced = fx.symbolic_trace(model)
            remap = self._remap(removed)
            output, cache = _clean_run(traced, self.images)
        except Exception:  # noqa: BLE001 — any model the surgery or the trace cannot handle keeps the full width
            self.compactor = None
            return None
        previous = (self.traced, self._traced_from, self.cache, self.output, self.base, self.remap)
        self.traced, self._traced_from, self.cache, self.output = traced, model, cache, output
        self.base, self.remap = {g: set(u) for g, u in removed.items()}, remap
        if not self.compact_checked and not self._compact_agrees(removed):
            self.compactor = None
            self.traced, self._traced_from, self.cache, self.output, self.base, self.remap = previous
            return None
        return output

    def _compact_agrees(self, removed: dict[str, list[int]]) -> bool:
        """The compact base and one extension of it against the silenced full-width model."""
        self.compact_checked = True
        extension = {g: list(u) for g, u in removed.items()}
        # Only prunable groups: an unprunable one (a ViT's qkv outputs) may map onto inputs a removed head took.
        for group in self.prunable[:: max(1, len(self.prunable) // 4)]:
            gone = set(extension.get(group.id, ()))
            free = [i for i in range(group.size) if i not in gone]
            if len(free) > 1:
                extension.setdefault(group.id, []).append(free[0])
        compact = [self.output, self(extension)]
        full = [self.silencer(r).eval()(self.images) for r in (removed, extension)]
        return all(a.shape == b.shape and torch.allclose(a, b, atol=1e-4 * max(1.0, float(b.abs().max())), rtol=1e-3)
                   for a, b in zip(compact, full, strict=True))

    def _remap(self, removed: dict[str, list[int]]) -> dict[str, dict[int, int]]:
        """Per consumer layer, each kept input index's position in the pruned layer."""
        if self.widths is None:
            full = self.silencer({})
            self.widths = {s.module: _input_width(full.get_submodule(s.module)) for g in self.groups.values()
                           for s in g.slices if s.role == "in" and s.param == "weight"}
        gone: dict[str, set[int]] = {name: set() for name in self.widths}
        for gid, units in removed.items():
            for s in self.groups[gid].slices:
                if s.role == "in" and s.param == "weight":
                    gone[s.module].update(i for u in units for i in s.units[u])
        return {name: {i: k for k, i in enumerate(i for i in range(width) if i not in gone[name])}
                for name, width in self.widths.items()}

    def _masks(self, extra: dict[str, list[int]]) -> dict[str, torch.Tensor]:
        """One multiplicative input mask per consumer layer of the extra units."""
        masks: dict[str, torch.Tensor] = {}
        for gid, units in extra.items():
            for name, mask in _input_masks(self.traced, self.groups[gid], [units], 1, self.remap).items():
                masks[name] = masks[name] * mask if name in masks else mask
        return masks


def causal_effects(model: nn.Module, space: PruningSpace, images: torch.Tensor, chunk_images: int = 512,
                   only: dict[str, list[int]] | None = None) -> dict[str, torch.Tensor]:
    """``log ρ`` per unit and sample (``{group id: units × samples}``), the model in eval mode and left as it was.

    ``only`` restricts the interventions to those units (rows follow its order).
    """
    effects = {}
    with eval_mode(model), torch.no_grad():
        try:
            traced = fx.symbolic_trace(model)
        except Exception:  # noqa: BLE001 — data-dependent forwards do not trace; fall back to full forwards
            traced = None
        output, cache = _clean_run(traced, images) if traced is not None else (model(images), None)
        clean = F.log_softmax(class_scores(output, "C-SWAP"), 1)
        predicted = clean.argmax(1)
        clean_logp = clean.gather(1, predicted[:, None]).squeeze(1)
        m = len(images)
        per_chunk = max(1, chunk_images // m)
        for g in space.prunable:
            wanted = list(range(g.size)) if only is None else list(only.get(g.id, ()))
            if not wanted:
                continue
            rows = []
            for start in range(0, len(wanted), per_chunk):
                units = wanted[start : start + per_chunk]
                masks = _input_masks(model, g, units, m)
                runner = traced if traced is not None else model
                handles = [runner.get_submodule(name).register_forward_pre_hook(
                    lambda mod, inp, mask=mask: _apply_mask(inp, mask, isinstance(mod, nn.Linear)))
                    for name, mask in masks.items()]
                replicated = images.repeat(len(units), *([1] * (images.ndim - 1)))
                try:
                    if traced is not None:
                        out = _SuffixRunner(traced, cache, set(masks), len(units)).run(replicated)
                    else:
                        out = model(replicated)
                finally:
                    for h in handles:
                        h.remove()
                logp = F.log_softmax(main_output(out), 1).gather(1, predicted.repeat(len(units))[:, None]).squeeze(1)
                rows.append((logp - clean_logp.repeat(len(units))).reshape(len(units), m))
            effects[g.id] = torch.cat(rows).cpu()  # the statistics (sign flips, Holm) run on the CPU
    return effects


def sign_flip_p_values(values: torch.Tensor, flips: int = 2000, seed: int = 0) -> torch.Tensor:
    """Two-sided p-value per row for H0 "mean is 0", by random sign flips of each row's samples."""
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (flips, values.shape[1]), generator=gen).double() * 2 - 1
    observed = values.double().mean(1).abs()
    null = (values.double() @ signs.T).abs() / values.shape[1]  # rows × flips
    return ((null >= observed[:, None] - 1e-12).sum(1) + 1).double() / (flips + 1)


def holm(p_values: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """Which hypotheses Holm's step-down procedure rejects at family-wise level ``alpha``."""
    order = torch.argsort(p_values)
    rejected = torch.zeros(len(p_values), dtype=torch.bool)
    for rank, index in enumerate(order.tolist()):
        if p_values[index] > alpha / (len(p_values) - rank):
            break
        rejected[index] = True
    return rejected


def classify(effects: torch.Tensor, alpha: float = 0.05, seed: int = 0) -> list[str]:
    """"critical" / "detrimental" / "neutral" per unit from its per-sample log ρ."""
    significant = holm(sign_flip_p_values(effects, seed=seed), alpha)
    mean = effects.mean(1)
    return ["critical" if s and mu < 0 else "detrimental" if s and mu > 0 else "neutral"
            for s, mu in zip(significant.tolist(), mean.tolist(), strict=True)]


@register_criterion("cswap")
def causal_scores(model: nn.Module, space: PruningSpace, batch: Batch, alpha: float = 0.05,
                  previous: Scores | None = None, only: dict[str, list[int]] | None = None) -> Scores:
    """Score = −mean log ρ (a unit whose removal raises the predicted class's probability scores lowest);
    critical units are locked (``Scores.locked``) and the classes are in ``Scores.classes``.

    Re-estimation may be partial: with ``previous`` and ``only``, just those units are
    intervened on again (Holm's family is then those units of the group) and the rest is kept.
    """
    effects = causal_effects(model, space, batch.images, only=only)
    scores = Scores({k: v.clone() for k, v in previous.items()}) if previous is not None else Scores()
    classes = {k: list(v) for k, v in (previous.classes if previous is not None else {}).items()}
    for gid, values in effects.items():
        units = list(range(len(values))) if only is None else list(only[gid])
        labels = classify(values, alpha, seed=batch.seed)
        if gid not in scores:
            scores[gid], classes[gid] = torch.zeros(len(values)), ["neutral"] * len(values)
        scores[gid][units] = -values.mean(1).float()
        for unit, label in zip(units, labels, strict=True):
            classes[gid][unit] = label
    scores.classes = classes
    scores.locked = {gid: [i for i, label in enumerate(labels) if label == "critical"] for gid, labels in classes.items()}
    scores.partial = True
    return scores

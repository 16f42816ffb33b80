"""ASCA: static channel gates learned with a sample-complexity-aware loss and a mask binarisation loss.

Methods §5 (ICASSP 2025; the paper's details are not public, so the loss is
fewprune's proposal, improved). One gate per unit of every prunable group,
``g = sigmoid((logit + b) / τ)`` with τ annealed 1 → 0.1, multiplies what
the unit's consumers read (:class:`~fewprune.structure.ChannelGates`). The
loss is

    Σ_i w_i ℓ_i / B              complexity-weighted task loss
    + λ_f · remaining(g)         differentiable MAC (or param) cost of the gates
    + λ_b(t) · mean(g (1 − g))   binarisation: every gate to 0 or 1

with ``w = B · softmax(ℓ / mean ℓ)`` (hard samples weigh more, easy ones
less) and λ_b ramped up over the first 30% of the iterations, so no
hand-set threshold decides: the gates end at 0 or 1 by themselves.

The budget lands on the target by projection rather than by a penalty: before
every step the shared offset ``b`` is set by bisection so the soft gates keep
exactly ``1 − target`` of the MACs. The proposal's quadratic penalty settled
at 78% of the MACs kept for a 50% target on resnet20 (distillation resists
it), and a Lagrange multiplier overshot and locked every gate shut on a small
net where all gates moved together. The linear cost term still makes an
expensive unit close before a cheap one of equal use.

``price`` says what the cost term charges a unit. ``"target"`` (the
default) charges its share of the target's cost, so a channel of a residual
stream, read by every block of its stage, pays many times what a block's
inner channel pays. Learning gates and weights together from scratch (14 000
steps, the task signal of half-trained weights) that constant pull wins:
resnet20 at 70% of MACs kept 1 of 16 stem channels and 5 of 32 in stage 2,
every inner channel, and reached 77.3% (15 epochs). ``"channels"`` charges
every unit the same, so the task term alone ranks the units and the projection
alone turns the budget into MACs (3 epochs: widths 12/16, 18/32, 44/64 on the
streams, 80.6% against 78.7%; ``benchmarks/asca-scratch.md`` has both forms at
15 epochs). The few-sample form shows it too where the task signal is thin:
``asca+mir`` on resnet56 at 70% with 10 samples kept 2 of 16 stem channels
and 4 of 32 in stage 2 (54.2%); criterion ``asca-flat`` (``price="channels"``)
reached 72.2% there (seed 0; seed 1: 85.2 against 84.4; 50 samples: 91.0
against 90.6; ``benchmarks/asca.md`` has all seeds).

The few-sample criterion ``asca`` learns only the gates, on the frozen
teacher, with distillation to the teacher's logits as the task loss (no
labels needed); the final logits are the scores and the ``threshold``
allocator meets the target exactly. ``asca-scratch`` learns gates and
weights together from scratch on a full training set with the same loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..augment.basic import random_crop_flip
from ..checkpoints import load_checkpoint, save_checkpoint
from ..models.memo import RowMemo
from ..models.outputs import main_output
from ..modes import eval_mode
from ..progress import progress_bar
from ..structure import ChannelGates, PruningSpace, frozen_parameters
from .base import Batch, Scores, register_criterion


@dataclass(repr=False)
class GateSchedule:
    """How gates are learned. The defaults suit the few-sample criterion (gates only, a few hundred steps)."""

    iterations: int = 300
    batch_size: int = 64
    lr: float = 0.05  # logit units per step (RMS over all gates): SGD on globally normalised gradients
    init: float = 3.0  # initial logit: every gate ≈ 0.95 open
    temperature: tuple[float, float] = (1.0, 0.1)  # annealed geometrically over the iterations
    budget_weight: float = 1.0  # λ_f of the linear cost term (the budget itself is met by projection)
    price: str = "target"  # what the cost term charges a unit: the target's own cost, or "channels" (one each)
    binarise_weight: float = 1.0
    binarise_ramp: float = 0.3  # fraction of the iterations over which λ_b ramps from 0
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.price not in PRICES:
            raise ValueError(f"GateSchedule.price must be one of {', '.join(map(repr, PRICES))}, not {self.price!r}")

    def __repr__(self) -> str:
        # A checkpoint names the run that wrote it by this text: fields added later (price) are named only when
        # changed, so checkpoints written before them still resume.
        named = [f"{k}={getattr(self, k)!r}" for k in self.__dataclass_fields__
                 if not (k in _NAMED_WHEN_CHANGED and getattr(self, k) == _NAMED_WHEN_CHANGED[k])]
        return f"GateSchedule({', '.join(named)})"


_NAMED_WHEN_CHANGED = {"price": "target"}
PRICES = ("target", "channels")  # what the cost term charges a unit (see the module docstring)


def complexity_weights(losses: torch.Tensor) -> torch.Tensor:
    """Per-sample weights ``B · softmax(ℓ / mean ℓ)``: above 1 for samples harder than the batch, below for easier.

    Computed on detached losses, so the weighting itself is not optimised.
    """
    losses = losses.detach()
    scale = losses.mean().clamp_min(1e-8)
    return len(losses) * torch.softmax(losses / scale, dim=0)


def binarisation_loss(values: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of ``g (1 − g)`` over every gate: zero exactly when every gate is 0 or 1, largest at 0.5."""
    flat = torch.cat([v.reshape(-1) for v in values.values()])
    return (flat * (1 - flat)).mean()


def remaining_fraction(space: PruningSpace, gates: ChannelGates, kind: str) -> torch.Tensor:
    """The fraction of the model's MACs, params or prunable units the soft gates keep (differentiable)."""
    keep = gates.soft_keep()
    if kind == "macs":
        return space.cost.macs(keep) / space.cost.base_macs
    if kind == "params":
        return space.cost.params(keep) / space.cost.base_params
    if kind == "channels":
        return sum(keep.values()) / sum(g.size for g in gates.groups)
    raise ValueError(f"gates learn towards a macs=, params= or channels= target, not {kind}=")


def project_onto_budget(space: PruningSpace, gates: ChannelGates, kind: str, keep: float, steps: int = 40) -> float:
    """Set the gates' shared offset so the soft gates keep exactly ``keep`` of ``kind`` (bisection); returns it."""
    with torch.no_grad():
        spread = max(float(v.abs().max()) for v in gates.logits.values()) + 40 * gates.temperature
        low, high = -spread, spread
        for _ in range(steps):
            gates.offset = (low + high) / 2
            if remaining_fraction(space, gates, kind) > keep:
                high = gates.offset
            else:
                low = gates.offset
        gates.offset = (low + high) / 2
    return gates.offset


def _normalise_gradients(parameters: list[nn.Parameter]) -> None:
    """Remove the gradients' common part, then scale them to unit RMS over all gates.

    A shift shared by every logit is undone by the budget projection, so it
    is removed first (otherwise the cost term's uniform push dominated the
    step and the logits drifted); one scale for all gates keeps how much
    more one gate matters than another, which Adam's per-gate scaling loses.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads])
        mean = flat.mean()
        rms = (flat - mean).pow(2).mean().sqrt()
        for g in grads:
            g.sub_(mean).div_(rms + 1e-12)


def learn_gates(model: nn.Module, space: PruningSpace, images: torch.Tensor,
                per_sample_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], kind: str,
                fraction: float,
                schedule: GateSchedule | None = None, seed: int = 0, weights: list[nn.Parameter] | None = None,
                weight_optimizer: Callable | None = None, weight_lr: Callable[[int], float] | None = None,
                augment: bool = True, bf16: bool = False, bake: bool = False, progress: bool = True,
                description: str = "learning gates", checkpoint: Path | None = None,
                checkpoint_every: int = 0) -> tuple[dict[str, torch.Tensor], dict]:
    """Learn gate logits towards removing ``fraction`` of ``kind``; returns ``(logits, log)``.

    ``per_sample_loss(x, outputs, indices)`` gives the task loss of each
    image of a mini-batch (``x`` the augmented images, ``outputs`` the gated
    model's, ``indices`` into ``images``). Only the gates are trained
    unless ``weights`` (with ``weight_optimizer(weights)`` and an optional
    learning-rate factor per iteration ``weight_lr``) are given, as in ASCA
    from scratch; ``bf16`` runs the forward pass under CPU bf16 autocast;
    ``bake`` folds the final gate values into the consumers' weights (so the
    model computes what the gated one did, and pruning the closed units
    changes only what they contributed). The model's mode is the caller's
    choice; the gates are removed afterwards, leaving the model's structure
    as it was. A non-finite loss stops with a ``FloatingPointError``.

    With a ``checkpoint`` path the whole state (gates, weights, BN
    statistics, optimisers, random stream, log) is saved every
    ``checkpoint_every`` iterations and at the end, and a run that finds its
    own checkpoint there goes on from it to the result an uninterrupted run
    gives. The log's ``seconds`` counts the loop's time over all runs.
    """
    schedule = schedule or GateSchedule()
    gen = torch.Generator().manual_seed(seed)
    gates = ChannelGates(model, space.groups, init=schedule.init, temperature=schedule.temperature[0])
    # One normalisation for all gates, not Adam's per-gate one: Adam moves every logit at about the same
    # speed whatever its gradient, so gates of very different use closed together.
    optimizers = [torch.optim.SGD(gates.parameters(), lr=schedule.lr, momentum=0.9)]
    schedulers = []
    if weights:
        optimizers.append(weight_optimizer(weights))
        if weight_lr is not None:
            schedulers.append(torch.optim.lr_scheduler.LambdaLR(optimizers[-1], weight_lr))
    t0, t1 = schedule.temperature
    total = schedule.iterations
    temperature_at = lambda it: t0 * (t1 / t0) ** (it / max(1, total - 1))  # noqa: E731 — annealed geometrically
    ramp = max(1, round(schedule.binarise_ramp * total))
    log: dict = {"iterations": [], "temperature": [], "task": [], "remaining": [], "binarisation": [],
                 "undecided": [], "open": [], "target_remaining": 1 - fraction, "kind": kind, "seconds": 0.0}
    weights, buffers = list(weights or []), list(model.buffers())  # BN statistics move when the model trains
    run = f"{description}: {kind}={fraction}, {schedule!r}, seed {seed}, {len(images)} images, {len(weights)} weights"
    first = 0
    state = load_checkpoint(checkpoint, run)
    if state is not None:
        first, log = state["iteration"], state["log"]
        with torch.no_grad():
            for gid, logit in gates.logits.items():
                logit.copy_(state["logits"][gid])
            for tensor, saved in zip(weights + buffers, state["weights"] + state["buffers"], strict=True):
                tensor.copy_(saved)
        for opt, saved in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(saved)
        for scheduler, saved in zip(schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved)
        gen.set_state(state["generator"])

    def save(iteration: int) -> None:
        save_checkpoint({"run": run, "iteration": iteration, "progress": [iteration, total], "log": log,
                         "generator": gen.get_state(),
                         "logits": {gid: p.detach() for gid, p in gates.logits.items()},
                         "weights": [p.detach() for p in weights], "buffers": buffers,
                         "optimizers": [o.state_dict() for o in optimizers],
                         "schedulers": [s.state_dict() for s in schedulers]}, checkpoint)

    with gates:
        for it in progress_bar(range(first, total), total=total - first, description=description, enabled=progress):
            started = time.perf_counter()
            gates.temperature = temperature_at(it)
            idx = torch.randperm(len(images), generator=gen)[: min(schedule.batch_size, len(images))]
            x = images[idx]
            if augment:
                x = random_crop_flip(x, 2, gen, mode="replicate")
            project_onto_budget(space, gates, kind, 1 - fraction)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                outputs = main_output(model(x))
            losses = per_sample_loss(x, outputs.float(), idx)
            task = (complexity_weights(losses) * losses).mean()
            remaining = remaining_fraction(space, gates, kind)
            cost = remaining if schedule.price == "target" else remaining_fraction(space, gates, schedule.price)
            values = gates.values()
            binarise = binarisation_loss(values)
            loss = (task + schedule.budget_weight * cost
                    + schedule.binarise_weight * min(1.0, it / ramp) * binarise)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{description}: the loss became {loss.item()} at iteration {it + 1}")
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            _normalise_gradients(gates.parameters())
            for opt in optimizers:
                opt.step()
            for scheduler in schedulers:
                scheduler.step()
            if it % schedule.log_every == 0 or it == total - 1:
                flat = torch.cat([v.detach().reshape(-1) for v in values.values()])
                log["iterations"].append(it + 1)
                log["temperature"].append(round(gates.temperature, 4))
                log["task"].append(task.item())
                log["remaining"].append(remaining.item())
                log["binarisation"].append(binarise.item())
                log.setdefault("offset", []).append(gates.offset)
                log["undecided"].append(float(((flat > 0.05) & (flat < 0.95)).float().mean()))
                log["open"].append(float((flat > 0.5).float().mean()))
            log["seconds"] += time.perf_counter() - started
            if checkpoint is not None and ((checkpoint_every and (it + 1) % checkpoint_every == 0) or it == total - 1):
                save(it + 1)
        gates.temperature = temperature_at(total - 1)  # as the last iteration left it, also when resumed after it
        project_onto_budget(space, gates, kind, 1 - fraction)
        final = {gid: v.detach().clone() for gid, v in gates.values().items()}
        gates.fixed, gates.bake = (final, True) if bake else (None, False)
    log["widths"] = {g.id: [g.size, int((final[g.id] > 0.5).sum())] for g in gates.groups}
    return {gid: (logit + gates.offset).detach().clone() for gid, logit in gates.logits.items()}, log


def distillation_per_sample(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                            temperature: float = 4.0) -> torch.Tensor:
    """KL(teacher ‖ student) of each sample at ``temperature`` (× T², the usual KD scale); a dense prediction's
    per-pixel divergences are averaged over the image."""
    t = temperature
    log_p = F.log_softmax(student_logits / t, dim=1)
    log_q = F.log_softmax(teacher_logits / t, dim=1)
    divergence = (log_q.exp() * (log_q - log_p)).sum(1) * t * t
    return divergence.flatten(1).mean(1) if divergence.ndim > 1 else divergence


@register_criterion("asca")
def asca(model: nn.Module, space: PruningSpace, batch: Batch, target_kind: str = "macs", fraction: float | None = None,
         iterations: int = 300, kd_temperature: float = 4.0, progress: bool = False, **schedule) -> Scores:
    """Gate logits learned on the frozen model from the few samples (label-free: distillation to the teacher).

    The model runs in eval mode (the teacher's BN statistics) with its
    weights frozen, and is left exactly as it was. ``fraction`` is the
    removal the gates aim at (compress passes the target's). The learning log
    is attached as ``Scores.log``.
    """
    if fraction is None:
        raise ValueError("the asca criterion learns towards a target: pass fraction= (compress does)")
    teacher_logits = RowMemo(batch.teacher)  # the augmented views of a few samples repeat

    def per_sample(x: torch.Tensor, outputs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        reference = main_output(teacher_logits(x))
        return distillation_per_sample(outputs, reference, kd_temperature)

    with eval_mode(model, batch.teacher), frozen_parameters(model):
        logits, log = learn_gates(model, space, batch.images, per_sample, target_kind, fraction,
                                  GateSchedule(iterations=iterations, **schedule), seed=batch.seed, progress=progress)
    scores = Scores(logits)
    scores.log = {"gates": log}
    return scores


asca.needs_target = True  # compress passes target_kind= and fraction=
asca.allocation = "threshold"  # learned logits are comparable across groups: no per-group normalisation


@register_criterion("asca-flat")
def asca_flat(model: nn.Module, space: PruningSpace, batch: Batch, **options) -> Scores:
    """ASCA's gates with every channel charged the same by the cost term (``price="channels"``); the budget is MACs.

    The default price pulls hardest on the residual streams (a stream channel is read by every block of its
    stage): on resnet56 at 70% with 10 samples it kept 2 of 16 stem channels. See the module docstring.
    """
    return asca(model, space, batch, **{"price": "channels", **options})


asca_flat.needs_target, asca_flat.allocation = asca.needs_target, asca.allocation  # as asca

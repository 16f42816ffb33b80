"""PRACTISE (Wang & Wu, CVPR 2023): drop the blocks that are cheapest to recover per unit of latency saved.

A block's *recoverability* is measured by recovery itself: drop the block
from a copy of the model, train identity-initialised 1×1 adaptors around the
hole (nothing else) to mimic the teacher's pre-pooling features, and take the
feature error that remains (a hole with no layer around it that an adaptor
folds into keeps the error its removal leaves). Dividing by the latency the block costs on this
machine gives the ``practise`` block score (lower = drop first). The scoring
lives here, next to the training it runs, and works on a copy: the model is
never changed.

After the blocks are dropped, the ``adapt`` recovery trains adaptors around
every hole and folds them into the neighbouring layers; ``mir`` then
fine-tunes the whole student (method ``practise`` = ``practise+adapt+mir``).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, replace

import torch
from torch import nn

from ..criteria import Batch, register_criterion
from ..devices import synchronize
from ..models.features import module_io
from ..models.memo import RowMemo
from ..modes import eval_mode
from ..structure import Pruned, PruningSpace, drop_blocks, frozen_parameters
from .adaptors import Adaptors, adaptor_sites
from .base import Schedule, register_recovery, train_student
from .mir import mimicked_layers, mimicking, teacher_features

# Scoring trains one set of adaptors per candidate block, so it gets a short schedule (the reference
# trains 1000–2000 iterations per block on a GPU). No weight decay: it would pull the identity-initialised
# adaptors towards zero, so even a block whose removal changes nothing would show an error.
SCORING_SCHEDULE = Schedule(iterations=60, batch_size=64, lr=0.02, weight_decay=0.0, warmup=5, bn="frozen")
ADAPT_SCHEDULE = Schedule(iterations=300, batch_size=64, lr=0.02, weight_decay=0.0, warmup=10, bn="frozen")


@torch.no_grad()
def block_latency(model: nn.Module, block: str, images: torch.Tensor, repeats: int = 15) -> float:
    """Median seconds the block's forward takes on its real input for ``images`` (eval mode, after warm-up), on
    the device the model is on."""
    [(_, block_input, _)] = list(module_io(model, [block], images, batch_size=len(images)))  # one batch, hooks gone
    module = model.get_submodule(block)
    with eval_mode(module):
        module(block_input)
        timings = []
        for _ in range(repeats):
            synchronize(block_input.device)
            start = time.perf_counter()
            module(block_input)
            synchronize(block_input.device)
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def recoverability(model: nn.Module, teacher: nn.Module, block: str, blocks: list[str], batch: Batch,
                   schedule: Schedule = SCORING_SCHEDULE, targets: RowMemo | None = None) -> float:
    """Feature MSE left after adaptors around the dropped ``block`` were trained (on a copy of ``model``).

    ``targets``: the teacher's features (:func:`.mir.teacher_features`), to share one memo between blocks.
    """
    example = batch.images[:1]
    layers = mimicked_layers(teacher, example)
    candidate = drop_blocks(copy.deepcopy(model), [block])
    for p in candidate.parameters():
        p.requires_grad_(False)
    sites = adaptor_sites(candidate, block, blocks, example)
    with Adaptors(candidate, sites) as adaptors, mimicking(candidate, teacher, layers, targets) as loss_fn:
        if sites:  # with nothing to train, the hole costs the feature error its removal leaves
            train_student(candidate, loss_fn, batch, schedule, seed=batch.seed, augment=False,
                          parameters=adaptors.parameters(), description=f"recoverability {block}", progress=False)
        candidate.eval()
        with torch.no_grad():
            return float(loss_fn(batch.images))


@register_criterion("practise")
def practise_scores(model: nn.Module, space: PruningSpace, batch: Batch, iterations: int = SCORING_SCHEDULE.iterations,
                    schedule: Schedule | None = None) -> dict[str, float]:
    """Recoverability ÷ measured latency saving per block (lower = drop first).

    ``iterations``: adaptor training steps per candidate block (CLI ``--option criterion.iterations=N``). The
    authors train 1000–2000 per block on a GPU: more steps rank the blocks by what adaptors can really recover,
    at a cost proportional to steps × blocks. ``schedule`` (Python only) replaces the whole scoring schedule,
    its iterations included.
    """
    if schedule is None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"practise: iterations must be a whole number of steps ≥ 1, not {iterations!r}")
        schedule = replace(SCORING_SCHEDULE, iterations=iterations)
    images = batch.images[:64]
    targets = teacher_features(batch.teacher, mimicked_layers(batch.teacher, images[:1]))
    scores = {}
    for block in space.blocks:
        error = recoverability(model, batch.teacher, block, space.blocks, batch, schedule, targets)
        saving = block_latency(model, block, images)
        scores[block] = error / saving if saving > 0 else float("inf")
    return scores


practise_scores.granularity = "blocks"


@register_recovery("adapt")
def adapt(student: nn.Module, teacher: nn.Module, batch: Batch, seed: int = 0, pruned: Pruned | None = None,
          schedule: Schedule | None = None, progress: bool = True) -> dict:
    """Train adaptors around every dropped block to mimic the teacher's features, then fold them in."""
    if pruned is None:
        raise ValueError("adapt needs to know what was pruned (call it through fewprune.compress)")
    if not pruned.dropped_blocks:
        return {"sites": []}
    schedule = schedule or adapt.default_schedule
    example = batch.images[:1]
    layers = mimicked_layers(teacher, example)
    sites = []
    for hole in pruned.dropped_blocks:
        sites += adaptor_sites(student, hole, pruned.blocks, example)
    if not sites:  # no hole has a layer an adaptor can fold into
        return {"sites": []}
    with frozen_parameters(student), Adaptors(student, sites) as adaptors, \
            mimicking(student, teacher, layers) as loss_fn:
        stats = train_student(student, loss_fn, batch, schedule, seed, parameters=adaptors.parameters(),
                              description="adapting", progress=progress)
        adaptors.absorb()
    return {**stats, "sites": [f"{n}:{side}" for n, side in dict.fromkeys(sites)], "schedule": asdict(schedule)}


adapt.default_schedule = ADAPT_SCHEDULE
adapt.needs_structure = True

"""Recovery: the student learns back what pruning cost it, from the few samples only.

A recovery is called as ``recovery(student, teacher, batch, seed=...)`` and
trains the student in place; it never decides what to prune.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..augment.basic import random_crop_flip
from ..criteria import Batch
from ..progress import progress_bar
from ..registry import Registry

recoveries: Registry = Registry("recovery")
register_recovery = recoveries.register


class RecoveryDiverged(FloatingPointError):
    """Training produced a NaN/inf or exploding loss; the best student so far was kept."""


@contextmanager
def all_trainable(student: nn.Module):
    """Every parameter of ``student`` trainable while the context is open; each keeps its own flag afterwards.

    The student inherits ``requires_grad`` from the teacher, and a teacher frozen for inference
    (``requires_grad_(False)``) would leave a recovery nothing to train. A recovery freezes what it
    means to itself (MiR's head). Flags are restored by parameter name, since a recovery may replace a
    parameter (adaptors folded into a conv); a parameter new to the model stays trainable.
    """
    flags = {name: p.requires_grad for name, p in student.named_parameters()}
    for p in student.parameters():
        p.requires_grad_(True)
    try:
        yield student
    finally:
        for name, p in student.named_parameters():
            p.requires_grad_(flags.get(name, True))


def augment_batch(x: torch.Tensor, generator: torch.Generator, padding: int = 2) -> torch.Tensor:
    """Random shift (edge-replicating pad, so the background stays background) and horizontal flip."""
    return random_crop_flip(x, padding, generator, mode="replicate")


# The Schedule fields a user sets by name (compress's schedule=, a sweep variant's schedule:), with prune's flags.
SCHEDULE_FLAGS = {"iterations": "--iterations", "lr": "--lr", "batch_size": "--batch-size", "decay": "--decay"}


@dataclass
class Schedule:
    """An iteration-based SGD schedule (few samples make epochs meaningless).

    800 iterations is a CPU-time choice, not the accuracy optimum. MiR's authors train ~2000 iterations with
    one step decay at 40%. On resnet20-fmnist (l1+mir, 70% MACs, 50 samples, seeds 0/1, one thread) that gives
    90.34 / 89.40 in 160 s, and 2000 cosine iterations 90.39 / 89.36, against 89.40 / 87.92 in 70 s here. So the
    iteration count matters (about +1.2 points) and the decay shape does not. Raise ``iterations`` (``prune
    --iterations``) when the CPU time is there.
    """

    iterations: int = 800
    batch_size: int = 64
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup: int = 20
    bn: str = "train"  # "train": batch statistics (running stats updated); "frozen": BN layers in eval mode
    bf16: bool = False  # forward passes under CPU bf16 autocast (faster on CPUs with bf16 units; fp32 weights)
    decay: str = "cosine"  # after the warm-up: "cosine" to 0, or "step": ×step_factor at each of step_at (fractions)
    step_at: tuple[float, ...] = (0.4,)  # MiR's authors decay once, at 40% of ~2000 iterations
    step_factor: float = 0.1
    channels_last: bool = True  # train in NHWC memory format (oneDNN's fast path: ~20% per step for resnet56)

    def __post_init__(self):  # a wrong setting is named when the schedule is made, not after the plan is spent
        checks = (("iterations", self.iterations >= 1, "at least 1"), ("batch_size", self.batch_size >= 1, "at least 1"),
                  ("lr", self.lr > 0, "above 0"), ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
                  ("weight_decay", self.weight_decay >= 0, "0 or more"), ("warmup", self.warmup >= 0, "0 or more"),
                  ("bn", self.bn in ("train", "frozen"), "'train' or 'frozen'"),
                  ("decay", self.decay in ("cosine", "step"), "'cosine' or 'step'"),
                  ("step_at", all(0 < f < 1 for f in self.step_at), "fractions of the iterations, each in (0, 1)"),
                  ("step_factor", self.step_factor > 0, "above 0"))
        wrong = [f"{name} must be {rule}, not {getattr(self, name)!r}" for name, ok, rule in checks if not ok]
        if wrong:
            raise ValueError(f"Schedule: {'; '.join(wrong)}")


@contextmanager
def memory_format(model: nn.Module, layout: torch.memory_format | None):
    """Hold ``model``'s 4-D weights in ``layout`` (None: leave them); contiguous again on exit, so the
    model computes exactly what a freshly built copy with its weights does."""
    if layout is None:
        yield
        return
    model.to(memory_format=layout)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)


def decay_factor(schedule: Schedule, iteration: int) -> float:
    """The learning rate's decay at ``iteration`` (0-based): cosine from 1 to 0, or steps of ``step_factor``."""
    total = max(1, schedule.iterations)
    if schedule.decay == "cosine":
        return 0.5 * (1 + math.cos(math.pi * iteration / total))
    if schedule.decay == "step":
        return schedule.step_factor ** sum(iteration >= at * total for at in schedule.step_at)
    raise ValueError(f"Schedule.decay must be 'cosine' or 'step', not {schedule.decay!r}")


def step_times(seconds: list[float]) -> dict:
    """What a training loop reports of its steps' wall times, for :func:`projected_seconds`: how many ran, their
    median (the first, which also warms up, left out) and their sum; nothing when no step ran."""
    if not seconds:
        return {}
    steady = seconds[1:] or seconds
    return {"steps_run": len(seconds), "seconds_per_step": statistics.median(steady), "steps_seconds": sum(seconds)}


def projected_seconds(stats: dict, seconds: float, iterations: int, timed: int) -> float:
    """The wall time a recovery step would take at ``iterations``, from a run of it at ``timed`` iterations that
    took ``seconds`` and reported ``stats``: the run's setup as it was (teacher passes, recalibration, folding) plus
    its steps, as many as ``iterations`` make (``cd`` runs them per layer), at the median step time it reported
    (:func:`step_times`); a step that reports no step times is scaled in proportion."""
    if "seconds_per_step" in stats:
        steps = stats["steps_run"] * iterations / max(1, timed)
        return seconds - stats["steps_seconds"] + steps * stats["seconds_per_step"]
    return seconds * iterations / max(1, timed)


def train_student(student: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
                  batch: Batch, schedule: Schedule, seed: int = 0, augment: bool = True,
                  mix: Callable | None = None, parameters=None, description: str = "recovering",
                  progress: bool = True) -> dict:
    """Minimise ``loss_fn(images, labels)`` over random mini-batches of the few samples.

    Cosine (or step, ``schedule.decay``) learning rate after a short warm-up. A non-finite loss, or one that
    grows beyond 100× its first value, stops training with
    :class:`RecoveryDiverged`; the student is first restored to the
    lowest-loss state seen so far.
    """
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in (parameters if parameters is not None else student.parameters()) if p.requires_grad]
    opt = torch.optim.SGD(params, lr=schedule.lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay)
    total = schedule.iterations
    # (the product in this order: it reproduces the cosine rates of earlier runs to the last bit)
    lr_at = lambda i: schedule.lr * (min(1.0, (i + 1) / max(1, schedule.warmup)) * decay_factor(schedule, i))
    images, labels = batch.images, batch.labels
    n = len(images)
    history: list[float] = []
    best_loss, best_state, first = math.inf, None, None
    window: list[float] = []
    decay_factor(schedule, 0)  # an unknown decay is refused before any training
    if schedule.bn not in ("train", "frozen"):
        raise ValueError(f"Schedule.bn must be 'train' or 'frozen', not {schedule.bn!r}")
    student.train()
    if schedule.bn == "frozen":
        for m in student.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    layout = torch.channels_last if schedule.channels_last and images.ndim == 4 else None
    step_seconds: list[float] = []  # each step's wall time: what --dry-run projects a full run from
    with memory_format(student, layout):
        for it in progress_bar(range(total), total=total, description=description, enabled=progress):
            started = time.perf_counter()
            idx = torch.randperm(n, generator=gen)[: min(schedule.batch_size, n)]
            x = images[idx]
            y = labels[idx] if labels is not None else None
            if augment:
                x = augment_batch(x, gen)
            if mix is not None:
                x, y = mix(x, gen), None  # a mixed image has no single label; mixing recoveries compare with the teacher
            if layout is not None:
                x = x.contiguous(memory_format=layout)
            for group in opt.param_groups:
                group["lr"] = lr_at(it)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=schedule.bf16):
                loss = loss_fn(x, y).float()
            value = loss.item()
            if first is None:
                first = value
            if not math.isfinite(value) or (first > 0 and value > 100 * first):
                if best_state is not None:
                    student.load_state_dict(best_state)
                raise RecoveryDiverged(
                    f"{description}: loss became {value:.4g} at iteration {it + 1}/{total} (first {first:.4g}); "
                    "stopped and kept the best student so far. Lower the learning rate or check the inputs."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(value)
            window.append(value)
            # Track the best state on a smoothed loss, checked sparsely (copying a state is not free).
            if len(window) == 25 or it == total - 1:
                mean = sum(window) / len(window)
                window.clear()
                if mean < best_loss:
                    best_loss, best_state = mean, copy.deepcopy(student.state_dict())
            step_seconds.append(time.perf_counter() - started)
    student.eval()
    return {"iterations": total, "first_loss": first, "last_loss": history[-1] if history else None,
            "loss_curve": history[:: max(1, total // 50)], **step_times(step_seconds)}

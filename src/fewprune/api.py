"""The public entry point: ``compress`` (probe, score, allocate, cut, recover, evaluate). Its ``Result`` is saved,
loaded and exported by :mod:`fewprune.result_files`."""

from __future__ import annotations

import copy
import inspect
import time
from dataclasses import replace

import torch
from torch import nn

from . import methods as method_registry
from .allocation import Probe, Target, TargetUnreachable, allocate, allocators, class_averaged_auc, paths, resolve_round_to
from .augment import augmentations
from .criteria import Batch, criteria, teacher_predictions
from .criteria.causal import SilencedOutputs
from .data.base import DatasetInfo
from .data.few_shot import FewShot, read_samples
from .devices import model_device, on_device, resolve_device
from .files import absolute_spec
from .metrics import macs as count_macs
from .metrics import params as count_params
from .metrics import versions
from .models.outputs import check_samples, main_output
from .modes import eval_mode
from .progress import progress_note
from .recovery import all_trainable, recoveries
from .result_files import Result
from .structure import Plan, Pruned, PruningSpace, Silencer, drop_blocks
from .structure.graph import UnsupportedModel


def _as_batch(samples, teacher: nn.Module, seed: int, device: torch.device) -> tuple[Batch, dict]:
    """Accept a FewShot dataset, an image tensor, an ``(images, labels)`` pair, any map-style dataset of
    images or ``(image, label)`` items, or an iterable of such batches (a DataLoader); moved to ``device``."""
    info: dict = {}
    if isinstance(samples, torch.Tensor):
        images, labels = samples, None
    elif (isinstance(samples, tuple | list) and len(samples) == 2 and isinstance(samples[0], torch.Tensor)
          and samples[0].ndim == 4):  # (a list of two single images is a dataset, below)
        images, labels = samples
    elif isinstance(samples, FewShot):
        images, labels = samples.tensors()
        info = {"indices": list(samples.indices), "seed": samples.seed, "indices_hash": samples.indices_hash(),
                "dataset": absolute_spec(samples.info.name) if samples.info else type(samples.dataset).__name__,
                **({"split": samples.info.split} if samples.info else {}),
                **({"input": samples.info.input_convention()} if isinstance(samples.info, DatasetInfo) else {})}
    elif hasattr(samples, "__getitem__") or hasattr(samples, "__iter__"):
        images, labels = read_samples(samples)
    else:
        raise TypeError("samples must be a FewShot dataset, an image tensor, an (images, labels) pair, a dataset of "
                        f"images or (image, label) items, or an iterable of batches (a DataLoader), not "
                        f"{type(samples).__name__}")
    if images.ndim != 4:
        raise ValueError(f"samples must be images N×C×H×W, got shape {tuple(images.shape)}")
    if len(images) == 0:
        raise ValueError("no samples: compress needs at least one image")
    info["count"] = len(images)
    info["labelled"] = labels is not None
    return Batch(images.float().to(device), None if labels is None else labels.to(device), teacher, seed), info


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    import random

    import numpy

    random.seed(seed)
    numpy.random.seed(seed % 2**32)


def _choose_blocks(model: nn.Module, space: PruningSpace, batch: Batch, criterion: str, count: int,
                   options: dict | None = None, ranked: bool = False) -> list[str]:
    """The ``count`` blocks that ``criterion`` scores lowest (ties broken by name), sorted by name.

    ``ranked=True`` keeps them lowest-scoring first instead.
    """
    if count > len(space.blocks):
        raise TargetUnreachable(f"cannot drop {count} blocks: the model has {len(space.blocks)} removable "
                                f"residual blocks ({', '.join(space.blocks) or 'none'})")
    if getattr(criteria.get(criterion), "granularity", "channels") != "blocks":
        block_criteria = [n for n in criteria.names() if getattr(criteria.get(n), "granularity", "") == "blocks"]
        raise ValueError(f"{criterion!r} scores channels, not blocks; name a block criterion ({', '.join(block_criteria)})")
    scores = criteria.get(criterion)(model, space, batch, **(options or {}))
    lowest = sorted(scores, key=lambda b: (scores[b], b))[:count]
    return lowest if ranked else sorted(lowest)


def _allocate_channels(model: nn.Module, space: PruningSpace, batch: Batch, recipe, target: Target, seed: int,
                       round_to: int | None, timings: dict) -> tuple[dict[str, list[int]], dict]:
    """Score ``model``'s channels with the recipe's criterion and allocate them to ``target``.

    Returns the removed units per group and the logs for the report (criterion
    log, step-wise allocation log); adds to ``timings``.
    """
    if target.value <= 0:
        return {}, {}
    logs: dict = {}
    t = time.perf_counter()
    criterion = criteria.get(recipe.criterion)
    family = allocators.get(recipe.allocation)  # name check before the search
    aim = {"target_kind": target.kind, "fraction": target.value} if getattr(criterion, "needs_target", False) else {}
    score = lambda: criterion(model, space, batch, **aim, **recipe.criterion_options)  # noqa: E731
    step_wise = getattr(family, "needs_probe", False)
    # Step-wise methods differ between targets only in where they stop (allocation.paths): within a shared
    # scope, their first scores and the common part of their walk are computed once.
    shared = paths.active() if step_wise else None
    walk = paths.fingerprint(model, batch.images, batch.labels, recipe, seed, round_to, target.kind,
                             [(g.id, g.size, g.min_keep, g.kind) for g in space.prunable]) if shared else None
    scores, shared_seconds = shared.first_scores(paths.fingerprint(walk, aim), score) if shared else (score(), 0.0)
    if shared_seconds:
        logs["shared_scores"] = {"shared_seconds": round(shared_seconds, 3)}
    if getattr(scores, "log", None):
        logs["criterion"] = scores.log
    timings["score_s"] = timings.get("score_s", 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    probe = _probe(model, space, batch, recipe) if step_wise else None
    if probe is not None and shared is not None:  # a walk another target took may be resumed
        probe.path = shared.log(walk, target.value)
    removed = allocate(space, scores, target, recipe.allocation, seed=seed, round_to=round_to,
                       **({"probe": probe} if probe else {}), **recipe.allocation_options)
    if probe is not None and probe.log:
        logs["allocation"] = {"steps": probe.log, "class_averaged_auc": class_averaged_auc(probe.log)}
        resumed = probe.path.report() if probe.path is not None else None
        if resumed:  # the walk to there was not repeated: the report says what it cost the call that took it
            logs["allocation"]["shared_path"] = resumed
    timings["allocate_s"] = timings.get("allocate_s", 0.0) + time.perf_counter() - t
    return removed, logs


def _drop_then_allocate(student: nn.Module, space: PruningSpace, batch: Batch, recipe, method: str, target: Target,
                        ranking: list[str], min_width, seed: int, round_to: int | None, timings: dict,
                        protect: set[str] | None = None):
    """Drop the lowest-ranked blocks, then allocate channels of what is left so the teacher loses ``target``.

    With ``target.blocks == "auto"`` it drops the fewest blocks with which the
    channel allocation reaches the target, one more at a time. An allocator
    may declare options it prefers for that search (``auto_blocks_prefers``;
    CMa's DE: prune nothing outside the profiled blocks): every block count is
    tried with them before any count without them, so whole blocks go before
    residual streams narrow. Returns ``(dropped, channel_space, removed, logs)``;
    the attempts that fell short are in ``logs["fewer_blocks_tried"]``.
    """
    example = batch.images[:1]
    counts = range(len(ranking) + 1) if target.blocks == "auto" else [target.blocks]
    preferred = getattr(allocators.get(recipe.allocation), "auto_blocks_prefers", None) or {}
    passes = [recipe]
    if target.blocks == "auto" and preferred and not preferred.keys() & recipe.allocation_options.keys():
        passes.insert(0, replace(recipe, allocation_options={**recipe.allocation_options, **preferred}))
    tried: list[dict] = []
    for allocation_recipe in passes:
        options = preferred if allocation_recipe is not recipe else {}  # recorded with the attempts that fall short
        for count in counts:
            dropped = sorted(ranking[:count])
            # Channels are scored and allocated on a copy with the blocks already dropped: its groups and
            # costs are what the channel part of the plan refers to.
            work = drop_blocks(copy.deepcopy(student), dropped)
            channel_space = PruningSpace(work, example, protected=protect, protect_features=recipe.protect_features,
                                         min_width=min_width, blocks=[b for b in space.blocks if b not in dropped])
            width_target = None
            try:
                width_target = _width_target_after_drop(target, space, channel_space, dropped)
                removed, logs = _allocate_channels(work, channel_space, batch, allocation_recipe, width_target, seed,
                                                   round_to, timings)
            except TargetUnreachable as err:
                if allocation_recipe is passes[-1] and count == counts[-1]:
                    if not count or width_target is None:
                        raise
                    # the allocator speaks of the block-dropped model: say how the user's target became that
                    by_blocks = (target.value - width_target.value) / (1 - width_target.value)
                    raise TargetUnreachable(
                        f"with {count} blocks dropped ({100 * by_blocks:.1f}% of {target.kind}), the "
                        f"{100 * target.value:.1f}% target leaves "
                        f"{100 * width_target.value:.1f}% of the rest to the channels; {err}") from err
                tried.append({"blocks": count, **({"allocation_options": options} if options else {}),
                              "unreachable": str(err)})
                continue
            except ValueError as err:
                if not tried:
                    raise
                if allocation_recipe is not passes[-1]:
                    break  # e.g. CMa with no block left to profile: the next pass may still reach the target
                raise TargetUnreachable(
                    f"{method!r} cannot remove {100 * target.value:.1f}% of {target.kind} with any number of "
                    f"dropped blocks: with {tried[-1]['blocks']} dropped, {tried[-1]['unreachable']}; with {count}, "
                    f"{err}") from err
            if tried:
                logs["fewer_blocks_tried"] = tried
            return dropped, channel_space, removed, logs
    raise AssertionError("unreachable: the last attempt returns or raises")


def _width_target_after_drop(target: Target, before: PruningSpace, after: PruningSpace, dropped: list[str]) -> Target:
    """The MAC/param fraction still to remove from the block-dropped model so the teacher loses ``target.value``.

    Relative to the smaller model the same absolute error is a larger fraction,
    so meeting this target within its tolerance meets the original one too.
    """
    base = {"macs": before.cost.base_macs, "params": before.cost.base_params}[target.kind]
    left = {"macs": after.cost.base_macs, "params": after.cost.base_params}[target.kind]
    gone_by_blocks = 1 - left / base
    if gone_by_blocks > target.value + target.tolerance:
        raise TargetUnreachable(
            f"dropping {len(dropped)} blocks ({', '.join(dropped)}) already removes {100 * gone_by_blocks:.1f}% of "
            f"{target.kind}, more than the {100 * target.value:.1f}% requested: drop fewer blocks or raise the target")
    return Target(**{target.kind: max(0.0, 1 - (1 - target.value) * base / left)})


def _probe(model: nn.Module, space: PruningSpace, batch: Batch, recipe) -> Probe:
    """Callbacks that let a step-wise allocator re-score and test the model with some units silenced."""
    criterion = criteria.get(recipe.criterion)
    shape = tuple(batch.images.shape[1:])
    kinds, sizes = {g.id: g.kind for g in space.groups}, {g.id: g.size for g in space.groups}
    truth = batch.labels if batch.labels is not None else teacher_predictions(batch.teacher, batch.images)
    classes = sorted(set(truth.tolist()))

    silencer, scratch = Silencer(model, space.groups), Silencer(model, space.groups)

    def silenced(removed: dict[str, list[int]]) -> nn.Module:  # valid until the next call
        return silencer(Plan(shape, removed, kinds, sizes)).eval()

    # Trials extend the accepted removal, at which the allocator anchors: only what the extra units change is
    # re-run (its own copy). Even a large extension's suffix costs at most a full pass, so none forces a rebase
    # (one did: a rejected trial became the base and the halved trial after it, not extending it, ran in full).
    # Each base is the physically pruned model, so suffixes get cheaper as the walk removes more.
    outputs = SilencedOutputs(lambda removed: scratch(Plan(shape, removed, kinds, sizes)), space, batch.images,
                              compactor=lambda removed: Plan(shape, removed, kinds, sizes, islands=space.islands)
                              .apply(copy.deepcopy(model)))

    def class_accuracy(removed: dict[str, list[int]]) -> list[float]:
        predicted = main_output(outputs(removed)).argmax(1)
        # exact fractions in double precision (a float32 mean makes 0.9 into 0.8999999761581421)
        return [int((predicted[truth == c] == c).sum()) / int((truth == c).sum()) for c in classes]

    return Probe(rescore=lambda removed, **extra: criterion(silenced(removed), space, batch,
                                                           **{**recipe.criterion_options, **extra}),
                 class_accuracy=class_accuracy, anchor=outputs.anchor)


def _protected_layers(model: nn.Module, names: list[str] | None) -> set[str] | None:
    """The user's layers to keep, each checked to exist (a typo would otherwise protect nothing, silently)."""
    if not names:
        return None
    layers = dict(model.named_modules())
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ValueError(f"cannot protect {unknown}: {type(model).__name__} has no such layer (e.g. "
                         f"{', '.join(n for n in list(layers)[1:6])})")
    return set(names)


def _check_runs(student: nn.Module, teacher: nn.Module, example: torch.Tensor, plan: Plan) -> None:
    """Refuse a pruned model that no longer runs, saying why, rather than failing later inside a recovery."""
    try:
        with eval_mode(student), torch.no_grad():
            student(example)
    except Exception as error:  # noqa: BLE001 — any failure here means the surgery broke the model
        raise UnsupportedModel(
            f"{type(teacher).__name__} no longer runs once {len(plan.removed)} channel groups are pruned "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]}): some layer depends on a width it stores "
            "(a split into fixed sizes, a reshape to a constant) that the dependency graph does not track. Keep the "
            "layers before it as they are (compress(protect=[...]), --protect NAME) or prune less") from error


def _mixing(recipe, teacher: nn.Module, example: torch.Tensor):
    """The recipe's mixing augmentation bound to the teacher, checked to have a recovery that trains on it."""
    if recipe.augment is None:
        return None
    mix = augmentations.get(recipe.augment)(teacher, example)
    steps = recipe.recovery.split("+")
    if mix is not None and not any("mix" in inspect.signature(recoveries.get(r)).parameters for r in steps):
        raise ValueError(f"augmentation {recipe.augment!r} needs a training recovery (kd, mir); "
                         f"{recipe.recovery!r} does not train")
    return mix


@torch.inference_mode(False)  # a caller's inference_mode or no_grad must not reach the recoveries and the
@torch.enable_grad()  # criteria that differentiate (KD, MiR, Taylor, PRACTISE's adaptors)
def compress(teacher: nn.Module, samples, method: str = "l1+kd", target: Target | None = None, seed: int = 0,
             labels: bool = True, progress: bool = True, round_to: int | str | None = None,
             min_width: int | str | None = None, schedule: dict | None = None,
             protect: list[str] | None = None, device: str | torch.device | None = None,
             options: dict | None = None) -> Result:
    """Prune a copy of ``teacher`` to ``target`` with ``method`` using only ``samples``; the teacher is untouched.

    ``labels=False`` hides the samples' labels from every stage (label-free compression).
    ``round_to=16`` keeps every channel width wider than 16 a multiple of 16,
    so CPU kernels that pad channels to blocks of 8 or 16 turn the removed MACs
    into saved time; ``round_to="auto"`` uses this CPU's block (16 with AVX-512).
    ``min_width=16`` (or ``"auto"``) prunes no channel group below 16 channels:
    padded kernels run a 5-channel conv as slowly as a 16-channel one, so
    such widths cost accuracy and save no time (drop whole blocks instead).
    ``schedule={"iterations": 400, "lr": 0.01}`` changes the training schedule
    of the method's recoveries (:func:`fewprune.methods.with_schedule`), e.g. to
    fit a CPU budget; the report records it. ``protect=["stem.conv"]`` keeps
    those layers' output widths as they are (the classifier always is).
    ``device="cuda"`` compresses on that GPU (``"auto"``: a GPU if one is
    visible); by default, where the teacher is. The teacher stays where it
    was (a copy moves) and ``result.student`` is on ``device``. A GPU gives
    the CPU's result to float tolerance, not bit for bit.
    A teacher frozen for inference (``requires_grad_(False)``), or a call under ``torch.no_grad()`` or
    ``torch.inference_mode()``, still recovers; the student keeps the teacher's ``requires_grad`` flags.
    ``options={"allocation.max_ratio": 0.95, "mir.recalibrate": False}`` sets options of the method's parts
    (:func:`fewprune.methods.with_options`; CLI ``--option PART.NAME=VALUE``); the report records them.
    """
    target = target or Target(macs=0.5)
    recipe = method_registry.get(method)
    if options:
        recipe = method_registry.with_options(recipe, options)
    if schedule:
        recipe = method_registry.with_schedule(recipe, **schedule)
    method_name = method if isinstance(method, str) else (recipe.label or recipe.name)
    device = resolve_device(device, model_device(teacher))
    with eval_mode(teacher):
        # a copy on the device, made in eval mode: the caller's teacher is neither moved nor changed
        working = teacher if on_device(teacher, device) else copy.deepcopy(teacher).to(device)
        result = _compress(working, samples, recipe, method_name, target, seed, labels, progress,
                           resolve_round_to(round_to), resolve_round_to(min_width), dict(schedule or {}), protect,
                           device, dict(options or {}))
    return result


def _compress(teacher, samples, recipe, method: str, target: Target, seed: int, labels: bool, progress: bool,
              round_to: int | None = None, min_width: int | None = None, schedule: dict | None = None,
              protect: list[str] | None = None, device: torch.device | None = None,
              part_options: dict | None = None) -> Result:
    _seed_everything(seed)
    timings: dict[str, float] = {}
    batch, few_info = _as_batch(samples, teacher, seed, device or torch.device("cpu"))
    if not labels:
        batch.labels = None
        few_info["labelled"] = False
    check_samples(teacher, batch.images, batch.labels)  # before any work
    example = batch.images[:1]
    student = copy.deepcopy(teacher).eval()

    t = time.perf_counter()
    protect = _protected_layers(teacher, protect)
    space = PruningSpace(student, example, protected=protect, protect_features=recipe.protect_features,
                         min_width=min_width)
    if recipe.granularity == "channels" and not space.prunable:
        raise ValueError(f"{type(teacher).__name__} has no prunable group (every group is protected: "
                         + "; ".join(g.reason for g in space.groups[:3]) + ")")
    timings["discover_s"] = time.perf_counter() - t

    requested = target
    if target.kind == "speedup":  # timed here: the MAC fraction that reaches it, then compressed as for that
        t = time.perf_counter()
        search = _search_speedup(teacher, student, space, batch, recipe, method, target, min_width, seed, round_to,
                                 protect, progress)
        timings["speedup_search_s"] = time.perf_counter() - t
        logs_search = {"speedup_search": search.to_dict()}
        target = Target(macs=search.best()["macs"], blocks=target.blocks)
        _seed_everything(seed)  # the rest runs as `Target(macs=f)` would: same scores, same student
    else:
        logs_search = {}
    dropped, channel_space, removed, logs = _decide(student, space, batch, recipe, method, target, min_width, seed,
                                                    round_to, protect, timings)
    logs.update(logs_search)
    plan = _plan(example, dropped, channel_space, removed,
                 meta={"method": method, "target": target.to_dict(), "seed": seed,
                       **({"requested_target": requested.to_dict()} if requested is not target else {}),
                       **({"round_to": round_to} if round_to else {}),
                       **({"min_width": min_width} if min_width else {}),
                       **({"recovery_schedule": schedule} if schedule else {}),
                       **({"options": part_options} if part_options else {})})
    t = time.perf_counter()
    plan.apply(student)
    _check_runs(student, teacher, example, plan)
    timings["surgery_s"] = time.perf_counter() - t

    t = time.perf_counter()
    recovery_stats: dict = {}
    if not plan.is_empty:
        pruned = Pruned.from_plan(plan, channel_space.groups, space.blocks).to(batch.images.device)
        mix = _mixing(recipe, teacher, example)
        for step in recipe.recovery.split("+"):
            recover = recoveries.get(step)
            context = {"pruned": pruned} if getattr(recover, "needs_structure", False) else {}
            if mix is not None and "mix" in inspect.signature(recover).parameters:
                context["mix"] = mix
            options = recipe.recovery_options.get(step, {})
            started = time.perf_counter()
            with all_trainable(student):
                stats = recover(student, teacher, batch, seed=seed, progress=progress, **context, **options)
            recovery_stats[step] = {**(stats or {}), "wall_seconds": round(time.perf_counter() - started, 3)}
    timings["recover_s"] = time.perf_counter() - t
    student.eval()

    teacher_macs, student_macs = count_macs(teacher, example), count_macs(student, example)
    teacher_params, student_params = count_params(teacher), count_params(student)
    report = {
        "method": method,
        "recipe": recipe.to_dict(),
        "target": target.to_dict(),
        **({"requested_target": requested.to_dict()} if requested is not target else {}),
        "seed": seed,
        **({"round_to": round_to} if round_to else {}),
        **({"min_width": min_width} if min_width else {}),
        **({"recovery_schedule": schedule} if schedule else {}),
        **({"options": part_options} if part_options else {}),
        **({"protected": sorted(protect)} if protect else {}),
        "samples": {k: v for k, v in few_info.items() if k != "indices"},
        "teacher": {"macs": teacher_macs, "params": teacher_params},
        "student": {"macs": student_macs, "params": student_params},
        "macs_reduction": 1 - student_macs / teacher_macs,
        "params_reduction": 1 - student_params / teacher_params,
        "predicted_macs_reduction": 1 - (channel_space.cost.macs(channel_space.keep_counts(removed))
                                         if channel_space is not space
                                         else space.cost.macs(space.keep_counts(removed), tuple(dropped)))
                                        / space.cost.base_macs,
        "recovery": recovery_stats,
        **logs,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "wall_seconds": round(sum(timings.values()), 3),
        "versions": versions(),
        "threads": torch.get_num_threads(),
        "device": str(batch.images.device),
    }
    return Result(student=student, plan=plan, report=report, few_shot=few_info)


def _decide(student: nn.Module, space: PruningSpace, batch: Batch, recipe, method: str, target: Target,
            min_width: int | None, seed: int, round_to: int | None, protect: set[str] | None, timings: dict,
            ranking: list[str] | None = None) -> tuple[list[str], PruningSpace, dict[str, list[int]], dict]:
    """What to remove from ``student`` (not changed) for ``target``: ``(dropped blocks, the space the removal
    refers to, removed units per group, logs)``. ``ranking`` (the blocks, lowest-scoring first) spares scoring
    the blocks again when dropping whole blocks before channels."""
    t = time.perf_counter()
    if recipe.granularity == "blocks":
        if target.kind != "blocks":
            raise ValueError(f"block-level method {recipe.criterion!r} needs a blocks= target (how many blocks to "
                             "drop)")
        dropped = _choose_blocks(student, space, batch, recipe.criterion, target.blocks, recipe.criterion_options)
        timings["score_s"] = timings.get("score_s", 0.0) + time.perf_counter() - t
        return dropped, space, {}, {}
    if target.kind == "blocks":
        raise ValueError(f"method {method!r} prunes channels; a blocks= target needs a block-level method "
                         "(e.g. block-residual+kd), or give it with macs= / params= to drop blocks and prune channels")
    if target.is_hybrid and target.blocks:
        if ranking is None:
            ranking = _choose_blocks(student, space, batch, recipe.block_criterion, len(space.blocks), ranked=True)
        timings["score_s"] = timings.get("score_s", 0.0) + time.perf_counter() - t
        dropped, channel_space, removed, logs = _drop_then_allocate(
            student, space, batch, recipe, method, target, ranking, min_width, seed, round_to, timings, protect)
    else:  # channels alone (a zero target removes nothing)
        dropped, channel_space = [], space
        removed, logs = _allocate_channels(student, space, batch, recipe, target, seed, round_to, timings)
    return dropped, channel_space, {g: r for g, r in removed.items() if r}, logs


def _plan(example: torch.Tensor, dropped: list[str], channel_space: PruningSpace, removed: dict[str, list[int]],
          meta: dict | None = None) -> Plan:
    """The plan of what :func:`_decide` chose: ``removed`` refers to ``channel_space``'s groups."""
    return Plan(input_shape=tuple(example.shape[1:]), removed=removed,
                kinds={g.id: g.kind for g in channel_space.groups}, sizes={g.id: g.size for g in channel_space.groups},
                dropped_blocks=dropped, islands=channel_space.islands, meta=meta or {})


# each candidate structure of a speed-up search is timed on batches of this many images, like the reports' speed-ups
SPEEDUP_BATCH = 64


def _search_speedup(teacher: nn.Module, student: nn.Module, space: PruningSpace, batch: Batch, recipe, method: str,
                    target: Target, min_width: int | None, seed: int, round_to: int | None,
                    protect: set[str] | None, progress: bool):
    """The smallest MAC fraction whose structure (no recovery: time depends on the structure alone) runs
    ``target.speedup``× faster than ``teacher`` here (:func:`~fewprune.allocation.speedup.search_macs_for_speedup`).
    """
    from .allocation.speedup import search_macs_for_speedup
    from .metrics import paired_speedup

    if recipe.granularity == "blocks":
        raise ValueError(f"block-level method {method!r} takes a block count (blocks=N), not a speed-up: give a "
                         "channel method, or speedup= with blocks= to drop blocks and prune channels")
    example = batch.images[:1]
    timed_input = example.expand(SPEEDUP_BATCH, *example.shape[1:]).contiguous()
    ranking = (_choose_blocks(student, space, batch, recipe.block_criterion, len(space.blocks), ranked=True)
               if target.is_hybrid and target.blocks else None)
    scratch: dict = {}
    candidates: dict[float, nn.Module] = {}  # a fraction timed again is not planned again

    def speedup_at(fraction: float) -> dict:
        if fraction not in candidates:
            _seed_everything(seed)  # each candidate is the structure `Target(macs=fraction)` would give
            dropped, channel_space, removed, _ = _decide(
                student, space, batch, recipe, method, Target(macs=fraction, blocks=target.blocks), min_width, seed,
                round_to, protect, scratch, ranking)
            candidates[fraction] = _plan(example, dropped, channel_space, removed).apply(copy.deepcopy(teacher)).eval()
        candidate = candidates[fraction]
        with torch.inference_mode():
            return paired_speedup(teacher, candidate, timed_input, min_seconds=0.3)

    return search_macs_for_speedup(speedup_at, target.speedup, tolerance=target.tolerance,
                                   log=lambda line: progress_note(line, progress))

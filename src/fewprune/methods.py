"""Methods: named recipes of (criterion, allocation, recovery, augmentation, granularity).

Registered names (``l1``, ``l1+kd``, …) fix sensible options; any other
``criterion[@allocation][+recovery[+recovery…]][+augmentation]`` string is
composed from the parts by name, e.g. ``l2@global+bn``, ``taylor+kd``,
``l1+fskd+mir`` (recoveries run in the order given) or ``l1+mir+cmamix``.
A registered method followed only by an augmentation swaps its augmentation:
``cma+mixup``, or ``cma+nomix`` for shift-and-flip alone (ablations).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .registry import Registry


@dataclass(frozen=True)
class Method:
    criterion: str
    allocation: str = "uniform"
    recovery: str = "none"
    augment: str | None = None
    granularity: str = "channels"  # or "blocks"
    criterion_options: dict = field(default_factory=dict)
    allocation_options: dict = field(default_factory=dict)
    recovery_options: dict = field(default_factory=dict)  # per recovery step: {"kd": {"temperature": 2}}
    protect_features: bool = False  # keep the pre-pooling width (recoveries that mimic features need it)
    block_criterion: str = "block-residual"  # picks the blocks a depth-and-width target drops (channel methods)
    description: str = ""
    label: str = ""  # the name a caller knows it by (a preview's, a sweep variant's): errors and reports use it

    @property
    def name(self) -> str:
        """The composed name, ``criterion@allocation+recovery`` (a registered alias may be shorter)."""
        return f"{self.criterion}@{self.allocation}+{self.recovery}"

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


methods: Registry = Registry("method")
register_method = methods.register

register_method("l1", Method("l1", description="L1 filter magnitude, uniform ratio, no recovery"))
register_method("l1+bn", Method("l1", recovery="bn", description="L1 + BN statistics re-estimated on the few samples"))
register_method("l1+kd", Method("l1", recovery="kd", description="L1 + knowledge distillation on the few samples"))
register_method("taylor+kd", Method("taylor", recovery="kd", description="first-order Taylor on the few samples + KD"))
register_method("random+kd", Method("random", recovery="kd", description="random channels + KD (sanity baseline)"))
register_method("block-residual+kd", Method("block-residual", recovery="kd", granularity="blocks",
                                            description="drop the blocks that change their input least, then KD"))
register_method("l1+fskd", Method("l1", recovery="fskd", description="L1 + FSKD closed-form 1×1 corrections"))
register_method("l1+lsq", Method("l1", recovery="lsq", description="L1 + layer-wise least squares: each pruned "
                                 "layer refitted in closed form to give the teacher's output on the student's input"))
register_method("l1+mir", Method("l1", recovery="mir", protect_features=True,
                                 description="L1 + MiR feature mimicking with the teacher's frozen head"))
register_method("lrp", Method("lrp", allocation="iterative",
                              description="Yeom et al.: LRP relevance (zennit), global ranking in 5% steps "
                                          "re-scored on the pruned model, no fine-tuning"))
register_method("lrp-aa", Method("lrp", allocation="accuracy-aware",
                                 description="Yasui et al.: LRP steps guarded by the harmonic mean of per-class "
                                             "accuracy on the samples (adaptive step and order), no fine-tuning"))
register_method("cswap", Method("cswap", allocation="progressive",
                                description="C-SWAP (proposed form): causal effect of silencing each unit, "
                                            "critical units locked, progressive chunks re-estimated, stop before "
                                            "sample accuracy drops; no fine-tuning"))
register_method("practise", Method("practise", recovery="adapt+mir", granularity="blocks", protect_features=True,
                                   description="PRACTISE: drop the blocks with the least feature error left after "
                                               "adaptor training per latency saved; adaptors folded in, then MiR"))
register_method("cma", Method("cma", allocation="de", recovery="mir", augment="cmamix", protect_features=True,
                              block_criterion="cma-block",
                              description="CMa: concept-mask profiled per-block ratios (DE), L1 inside blocks, "
                                          "MiR on CMaMix images; label-free"))
register_method("asca", Method("asca", allocation="threshold",
                               description="ASCA (few-sample form): static gates learned on the frozen teacher with "
                                           "complexity-weighted distillation, binarisation and MAC-budget losses; "
                                           "no fine-tuning"))
register_method("cma+mir-blocks", Method("cma", allocation="de", recovery="mir-blocks", augment="cmamix",
                                         protect_features=True, block_criterion="cma-block",
                                         description="CMa's per-block ratios and CMaMix with block-wise MiR (every "
                                                     "residual block's output mimicked on the kept channels); "
                                                     "label-free"))
register_method("cma-block", Method("cma-block", recovery="mir", augment="cmamix", granularity="blocks",
                                    protect_features=True,
                                    description="CMa block level: drop the blocks whose concept masks move least, "
                                                "then MiR on CMaMix images"))


def names() -> list[str]:
    """Registered method names (compositions such as ``l2@global+bn`` work too)."""
    return methods.names()


def get(name: str | Method) -> Method:
    """A registered method, or one composed from ``criterion[@allocation][+recovery]``."""
    from .allocation import allocators
    from .augment import augmentations
    from .criteria import criteria
    from .recovery import recoveries

    if isinstance(name, Method):
        return name
    if name in methods:
        return methods.get(name)
    head, *rest = name.split("+")
    augment = [part for part in rest if part in augmentations]
    if len(augment) > 1:
        raise ValueError(f"method {name!r} names more than one augmentation: {augment}")
    rest = [part for part in rest if part not in augmentations]
    if head in methods and not rest:  # a registered method with another augmentation, e.g. cma+mixup
        return replace(methods.get(head), augment=augment[0] if augment else None, description=f"composed: {name}")
    criterion, _, allocation = head.partition("@")
    recovery = "+".join(rest) if rest else "none"
    for registry, part in ((criteria, criterion), (allocators, allocation or "uniform"),
                           *((recoveries, r) for r in rest)):
        try:
            registry.get(part)
        except KeyError as error:  # it names the registered parts of this kind
            raise KeyError(f"method {name!r} is not registered, and as a composition: {error.args[0]} "
                           "(`fewprune methods` lists the methods and every part)") from None
    # A criterion may name the allocator its scores are made for (ASCA's gate logits: ``threshold``; CMa's block
    # profile: ``de``) and the block criterion that goes with it.
    scorer = criteria.get(criterion)
    base = methods.get(f"{criterion}+{recovery}") if f"{criterion}+{recovery}" in methods \
        else Method(criterion, allocation=getattr(scorer, "allocation", "uniform"),
                    block_criterion=getattr(scorer, "block_criterion", Method.block_criterion))
    return replace(base, criterion=criterion, allocation=allocation or base.allocation, recovery=recovery,
                   augment=augment[0] if augment else base.augment,
                   granularity=getattr(scorer, "granularity", "channels"),
                   protect_features=base.protect_features or needs_features(recovery),
                   description=base.description or f"composed: {name}")


def with_schedule(method: str | Method, **changes) -> Method:
    """The method with the training schedule of its recoveries changed, e.g. ``iterations=400, lr=0.01``.

    For a larger model or a tighter CPU budget than the defaults suit. Any
    :class:`~fewprune.recovery.Schedule` field may be given; each training
    recovery (``kd``, ``mir``, ``adapt``, …) keeps its own defaults for the
    rest. A recovery that takes such a setting by name (``cd``'s iterations,
    lr and batch size; ``bn``'s and ``fskd``'s batch size) gets it too;
    settings a step does not have leave it as it is. An unknown field is refused.
    """
    import dataclasses
    import inspect

    from .recovery import Schedule, recoveries

    fields = {f.name for f in dataclasses.fields(Schedule)}
    unknown = set(changes) - fields
    if unknown:
        raise ValueError(f"unknown schedule settings {sorted(unknown)}; a recovery schedule has {sorted(fields)}")
    recipe = get(method)
    options = dict(recipe.recovery_options)
    for step in recipe.recovery.split("+"):
        function = recoveries.get(step)
        parameters = inspect.signature(function).parameters
        mine = dict(options.get(step, {}))
        if "schedule" in parameters:
            base = mine.get("schedule") or getattr(function, "default_schedule", None) or Schedule()
            mine["schedule"] = replace(base, **changes)
        else:
            mine.update({k: v for k, v in changes.items() if k in parameters})
        if mine:
            options[step] = mine
    return replace(recipe, recovery_options=options)


def training_lengths(method: str | Method) -> list[tuple[str, int, int]]:
    """The method's recovery steps that train, each as ``(step, iterations, batch_size)`` as it will run: a step
    on a :class:`~fewprune.recovery.Schedule` (its own default, or the one ``with_schedule`` set), or one that
    takes ``iterations`` itself (``cd``: per layer). Closed-form steps (``lsq``, ``fskd``, ``bn``) are not listed."""
    import inspect

    from .recovery import Schedule, recoveries

    recipe = get(method)
    steps = []
    for step in (s for s in recipe.recovery.split("+") if s != "none"):
        function = recoveries.get(step)
        parameters = inspect.signature(function).parameters
        own = recipe.recovery_options.get(step, {})
        if "schedule" in parameters:
            schedule = own.get("schedule") or getattr(function, "default_schedule", None) or Schedule()
            steps.append((step, schedule.iterations, schedule.batch_size))
        elif "iterations" in parameters:
            given = {name: own.get(name, parameters[name].default) for name in ("iterations", "batch_size")
                     if name in parameters}
            steps.append((step, given["iterations"], given.get("batch_size", 0)))
    return steps


# Arguments compress passes to each part itself, and the training schedule (set by with_schedule): not options.
_SUPPLIED = {"model", "space", "batch", "target_kind", "fraction", "scores", "target", "allocator", "level", "seed",
             "round_to", "probe", "student", "teacher", "progress", "pruned", "mix", "schedule"}


def part_options(method: str | Method) -> dict[str, dict]:
    """What ``options`` (CLI ``--option``) can set for each part of ``method``.

    ``{part: {"label": ..., "field": ..., "options": {NAME: value in effect}, "open_ended": bool}}``, where
    part is ``criterion``, ``allocation`` or a recovery step; the value in effect is the method's own, else the
    part's default; ``open_ended``: the part also takes names it does not list (``**kwargs``).
    """
    import inspect

    from .allocation import allocate, allocators
    from .criteria import criteria
    from .recovery import recoveries

    recipe = get(method)
    parts = {"criterion": (f"criterion {recipe.criterion!r}", "criterion_options", [criteria.get(recipe.criterion)],
                           recipe.criterion_options),
             "allocation": (f"allocation {recipe.allocation!r}", "allocation_options",
                            [allocators.get(recipe.allocation), allocate], recipe.allocation_options)}
    for step in (s for s in recipe.recovery.split("+") if s != "none"):
        parts[step] = (f"recovery {step!r}", "recovery_options", [recoveries.get(step)],
                       recipe.recovery_options.get(step, {}))
    described = {}
    for part, (label, field_name, functions, own) in parts.items():
        options, open_ended = {}, False
        for function in functions:
            for name, p in inspect.signature(function).parameters.items():
                if p.kind is p.VAR_KEYWORD:
                    open_ended = open_ended or function is not allocate  # allocate's **options: the allocator's
                elif name not in _SUPPLIED and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    options.setdefault(name, own.get(name, None if p.default is p.empty else p.default))
        described[part] = {"label": label, "field": field_name, "options": options, "open_ended": open_ended}
    return described


def with_options(method: str | Method, options: dict) -> Method:
    """The method with options of its parts set, e.g. ``{"allocation.max_ratio": 0.95, "mir.recalibrate": False}``.

    A key is ``PART.NAME``: PART is ``criterion``, ``allocation`` or one of the
    method's recovery steps (``kd``, ``mir``, …), NAME a keyword argument that
    part takes (for ``allocation``: the allocator's own, or ``max_ratio``, the
    largest share of any group that may go, 0.9 by default); :func:`part_options`
    (``fewprune methods NAME``) lists them. Options set here override the
    method's; the result's report records both (``options`` and ``recipe``).
    An unknown part or name is refused with the names it takes, before any work.
    """
    from .recovery import SCHEDULE_FLAGS
    from .registry import did_you_mean

    recipe = get(method)
    parts = part_options(recipe)
    changed = {"criterion_options": dict(recipe.criterion_options),
               "allocation_options": dict(recipe.allocation_options),
               "recovery_options": {k: dict(v) for k, v in recipe.recovery_options.items()}}
    for key, value in options.items():
        part, _, name = str(key).partition(".")
        if not name or part not in parts:
            raise ValueError(f"option {key!r}: write PART.NAME, where PART is one of {', '.join(parts)} "
                             f"(the parts of {recipe.criterion}@{recipe.allocation}+{recipe.recovery})")
        if name == "schedule":
            raise ValueError(f"option {key!r}: a recovery's training schedule is set with schedule= (CLI "
                             f"{', '.join(SCHEDULE_FLAGS.values())})")
        described = parts[part]
        takes = sorted(described["options"])
        if name not in takes and not described["open_ended"]:
            raise ValueError(f"option {key!r}: {described['label']} takes no {name!r}{did_you_mean(name, takes)}; "
                             f"it takes {', '.join(takes) or 'nothing'}")
        if described["field"] == "recovery_options":
            changed["recovery_options"].setdefault(part, {})[name] = value
        else:
            changed[described["field"]][name] = value
    return replace(recipe, **changed)


def catalogue() -> dict[str, list[dict]]:
    """Every registered method and part by name, with a one-line description, for listing.

    ``methods`` rows give each method's recipe and whether it reads labels;
    ``criteria`` rows their granularity (channels or blocks).
    """
    from .allocation import allocators
    from .augment import augmentations
    from .criteria import criteria
    from .recovery import recoveries

    def first_line(obj) -> str:
        return ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0].replace("``", "")

    rows = {"methods": []}
    for name in names():
        m = get(name)
        recipe = f"{m.criterion}@{m.allocation}+{m.recovery}" + (f"+{m.augment}" if m.augment else "")
        rows["methods"].append({"name": name, "granularity": m.granularity, "recipe": recipe,
                                "reads_labels": reads_labels(m), "description": m.description})
    for kind, registry in (("criteria", criteria), ("allocations", allocators), ("recoveries", recoveries),
                           ("augmentations", augmentations)):
        rows[kind] = [{"name": n, "description": first_line(registry.get(n)),
                       **({"granularity": getattr(registry.get(n), "granularity", "channels")}
                          if kind == "criteria" else {})} for n in registry.names()]
    return rows


def needs_features(recovery: str) -> bool:
    """Whether a recovery (or any step of a ``+`` chain) mimics pre-pooling features, so their width must be kept."""
    from .recovery import recoveries

    return any(getattr(recoveries.get(r), "needs_features", False) for r in recovery.split("+"))


def reads_labels(recipe: str | Method) -> bool:
    """Whether compressing with ``recipe`` may look at the samples' labels.

    A part that can says so with a ``reads_labels`` attribute: ``True``, or,
    when its options decide, a function of them (KD reads labels only with a
    ``label_weight``). Parts without it never read a label (the test suite
    checks every registered part). A recipe that reads none gives the same
    plan and student whether the labels are shown or hidden, so a benchmark
    may count one measurement for both settings.
    """
    from .allocation import allocators
    from .criteria import criteria
    from .recovery import recoveries

    recipe = get(recipe)

    def reads(part, options: dict) -> bool:
        flag = getattr(part, "reads_labels", False)
        return bool(flag(options) if callable(flag) else flag)

    blocks_too = recipe.granularity == "channels"  # a depth-and-width target ranks blocks with block_criterion
    return (reads(criteria.get(recipe.criterion), recipe.criterion_options)
            or (blocks_too and reads(criteria.get(recipe.block_criterion), {}))
            or reads(allocators.get(recipe.allocation), recipe.allocation_options)
            or any(reads(recoveries.get(step), recipe.recovery_options.get(step, {}))
                   for step in recipe.recovery.split("+")))

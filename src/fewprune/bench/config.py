"""Sweep configurations: models × methods × sample counts × targets × seeds, read from YAML."""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from ..files import absolute_spec
from ..registry import did_you_mean

TRAINING_KINDS = ("ceiling", "scratch")  # result rows of full-data training jobs (ceilings, asca-scratch)
# What a report ranks by: a result row's field → how its sentences, titles and table columns name it.
METRICS = {"accuracy": {"name": "accuracy", "title": "Top-1 test accuracy", "column": "top-1"},
           "mean_iou": {"name": "mean IoU", "title": "Test mean IoU", "column": "mean IoU"}}


def gate_changes(entry: dict) -> dict:
    """A scratch ``gates`` entry's changes to the gate schedule, without the ``models`` it may be limited to."""
    return {k: v for k, v in entry.items() if k != "models"}
JOB_KINDS = ("cell", *TRAINING_KINDS)  # result rows of a sweep's jobs (besides teachers and latency rows)
# How a compare entry pairs two methods' cells: at the same target, or at the speed-up the first's cells measured
COMPARE_AT = ("target", "speed-up")
VARIANT_KEYS = ("method", "options", "schedule")


def variant_recipe(variant: dict):
    """A sweep variant's :class:`~fewprune.methods.Method`: its ``method`` with its ``schedule`` and its parts'
    ``options`` set (as ``prune --iterations … --option PART.NAME=VALUE``)."""
    from ..methods import with_options, with_schedule

    recipe = variant["method"]
    if variant.get("schedule"):
        recipe = with_schedule(recipe, **variant["schedule"])
    return with_options(recipe, variant.get("options") or {})


def variant_arguments(variant: dict) -> str:
    """The ``prune`` arguments that run a variant: ``METHOD [--iterations N …] [--option PART.NAME=VALUE …]``."""
    from ..recovery import SCHEDULE_FLAGS

    schedule = "".join(f" {SCHEDULE_FLAGS[k]} {v}" for k, v in (variant.get("schedule") or {}).items())

    def text(value) -> str:  # as --option reads it (YAML): a string bare, anything else as compact JSON
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

    options = "".join(f" --option {shlex.quote(f'{k}={text(v)}')}" for k, v in (variant.get("options") or {}).items())
    return variant["method"] + schedule + options


@dataclass(frozen=True)
class Cell:
    """One compression to run and measure; ``key`` identifies it across re-runs."""

    model: str
    method: str
    samples: int
    target: dict
    seed: int
    dataset: str
    per_class: bool = False
    labels: bool = True
    round_to: int | str | None = None  # a channel count or 'auto' (this machine's channel block)
    min_width: int | str | None = None  # no group pruned below it: a channel count or 'auto'
    # when ``method`` names one of the sweep's variants: what it runs ({"method", "options", "schedule"})
    variant: dict | None = field(default=None, compare=False)
    # the sweep's plugins (absolute .py paths or module names): what its command must import to name their parts
    plugins: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        fields = asdict(self)
        for option in ("round_to", "min_width", "variant"):  # cells from before these options existed keep their keys
            if fields[option] is None:
                del fields[option]
        del fields["plugins"]  # where the parts are imported from is not what is measured
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def recipe(self):
        """What :func:`fewprune.compress` runs: the method's name, or a variant's method with its options and
        schedule set."""
        if self.variant is None:
            return self.method
        from dataclasses import replace

        return replace(variant_recipe(self.variant), label=self.method)

    def run(self, eval_limit: int | None, latency: bool, device=None) -> dict:
        from .runner import run_cell

        return run_cell(self, eval_limit, latency, device)

    def describe(self) -> str:
        return self.command()

    def command(self) -> str:
        """The equivalent ``fewprune prune`` command line (importing the sweep's plugins first)."""
        what = " ".join(f"--{kind} {value}" for kind, value in self.target.items())
        count = f"--per-class {self.samples}" if self.per_class else f"--samples {self.samples}"
        method = self.method if self.variant is None else variant_arguments(self.variant)
        plugins = "".join(f" --plugin {shlex.quote(p)}" for p in self.plugins)
        return (f"fewprune{plugins} prune --model {self.model} --data {self.dataset} {count} --method {method} "
                f"{what} --seed {self.seed}" + ("" if self.labels else " --no-labels")
                + (f" --round-to {self.round_to}" if self.round_to else "")
                + (f" --min-width {self.min_width}" if self.min_width else "") + " --out OUT")


@dataclass
class SweepConfig:
    name: str
    dataset: str
    models: list[str]
    methods: list[str]
    samples: list[int]
    targets: list[dict]
    seeds: list[int] = field(default_factory=lambda: [0])
    per_class: bool = False
    labels: bool = True
    round_to: int | str | None = None  # widths above it kept multiples of it, or 'auto' (latency-friendly)
    min_width: int | str | None = None  # no channel group pruned below it, or 'auto' (this CPU's channel block)
    eval_limit: int | None = None  # None: the full test split
    latency: bool = True
    metric: str = "accuracy"  # what the report ranks by: "accuracy", or "mean_iou" for segmentation
    ceiling: dict | None = None  # full-data fine-tuning of each structure: {"epochs": .., "lr": .., "blocks": ..}
    #                              (blocks: the block criterion whose blocks a block-count ceiling fine-tunes)
    scratch: dict | None = None  # ASCA from scratch on the full training set per width target: {"epochs": ..,
    #                              "gates": [{}, {"price": "channels"}]} (one job per gate-schedule change; {}: none;
    #                              an entry's "models": [..] runs it on those of the sweep's models only)
    variants: dict | None = None  # methods with changed settings, by a name methods: can list: {NAME: {method: ..,
    #                                options: {PART.NAME: value}, schedule: {iterations: .., lr: .., batch_size: ..,
    #                                decay: ..}}}, as prune --method .. --option .. --iterations ..
    compare: list[dict] | None = None  # paired differences in the report: [{methods: [a, b], note: ".."}], a − b
    #                                    per seed (a seed fixes the few samples), where both ran at a setting;
    #                                    with at: speed-up, at each speed-up a's cells measured (b interpolated)
    plugins: list[str] | None = None  # the user's parts to import first (.py paths relative to this config, or
    #                                   module names), so methods: can name them; see fewprune.plugins
    alongside: str | None = None  # another sweep's config (path relative to this one): its matching cells are
    #                                shown in the report as "method (its name)"
    results: str = ""  # JSON-lines file; default next to the config
    report: str = ""  # markdown report; default next to the config
    source: str = ""

    @classmethod
    def read(cls, path: str | Path) -> SweepConfig:
        path = Path(path)
        raw = yaml.safe_load(path.read_text()) or {}
        known = [k for k in cls.__dataclass_fields__ if k != "source"]
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            hints = "".join(f"; {k!r}: {hint[2:]}" for k in unknown if (hint := did_you_mean(k, known)))
            raise ValueError(f"{path}: unknown keys {unknown}{hints} (a sweep config takes {', '.join(known)})")
        missing = [k for k in ("name", "dataset", "models", "methods", "samples", "targets") if k not in raw]
        if missing:
            raise ValueError(f"{path}: missing keys {missing}")
        config = cls(**raw, source=str(path)) if "source" not in raw else cls(**raw)
        base = path.parent
        if not config.results:
            config.results = str(base / "results" / f"{config.name}.jsonl")
        if not config.report:
            config.report = str(base / f"{config.name}.md")
        # Paths in models: and dataset: are read from the config's folder, as plugins: are (zoo:, torchvision:, timm:
        # names and built-in datasets stay as they are, and so do the jobs' keys of sweeps that use only those).
        config.dataset = absolute_spec(config.dataset, base)
        config.models = [absolute_spec(model, base) for model in config.models]
        for entry in (config.scratch or {}).get("gates", []):
            if isinstance(entry, dict) and isinstance(entry.get("models"), list):
                entry["models"] = [absolute_spec(model, base) for model in entry["models"]]
        if config.alongside and not Path(config.alongside).is_absolute():
            config.alongside = str(base / config.alongside)  # like results and report: next to the config
        if config.plugins:
            from .. import plugins

            config.plugins = [str((base / p).resolve()) if p.endswith(".py") and not Path(p).is_absolute() else p
                              for p in config.plugins]
            plugins.load_all(config.plugins)  # before any method name is looked up
        if config.metric not in METRICS:
            raise ValueError(f"{path}: metric is one of {', '.join(METRICS)}, not {config.metric!r}")
        from ..allocation import Target

        for t in config.targets:
            try:
                Target.from_dict(t)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: each target is a mapping such as {{macs: 0.5}} or {{macs: 0.7, blocks: 6}}, "
                                 f"got {t!r} ({e})") from None
            if "speedup" in t:  # its structure would depend on how busy the machine was while the sweep ran
                raise ValueError(f"{path}: a sweep cannot take the target {t!r}: a speed-up target times candidate "
                                 "structures, and a sweep's jobs run beside each other. Give MAC fractions (the "
                                 "report measures their speed-ups, and `fewprune bench --remeasure-latency` times "
                                 "them again on a quiet machine)")
        unknown = set(config.ceiling or {}) - {"epochs", "lr", "blocks"}
        if unknown:
            raise ValueError(f"{path}: ceiling takes epochs, lr and blocks (a block criterion), not {sorted(unknown)}")
        unknown = set(config.scratch or {}) - {"epochs", "gates"}
        if unknown:
            raise ValueError(f"{path}: scratch takes epochs and gates (a list of gate-schedule changes), "
                             f"not {sorted(unknown)}")
        from ..criteria.asca import GateSchedule

        for entry in (config.scratch or {}).get("gates", []):
            changes = gate_changes(entry) if isinstance(entry, dict) else entry
            wrong = set(changes) - set(GateSchedule.__dataclass_fields__) if isinstance(changes, dict) else {changes}
            if wrong:
                raise ValueError(f"{path}: scratch gates: each entry changes GateSchedule fields "
                                 f"({', '.join(GateSchedule.__dataclass_fields__)}), and may name the models it is "
                                 f"for, not {sorted(map(str, wrong))}")
            only = entry.get("models", config.models)
            if not isinstance(only, list) or not set(only) <= set(config.models):
                raise ValueError(f"{path}: scratch gates {entry}: models must be a list of the sweep's models "
                                 f"({', '.join(config.models)})")
            try:
                GateSchedule(**changes)  # the values too, before hours of training
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}: scratch gates {changes}: {error}") from None
        config._check_variants(path)
        config._check_comparisons(path)
        blocks = (config.ceiling or {}).get("blocks")
        if blocks is not None:
            from ..criteria import criteria

            if getattr(criteria.get(blocks), "granularity", "") != "blocks":  # an unknown name lists the known ones
                raise ValueError(f"{path}: ceiling blocks: {blocks!r} scores channels, not blocks")
        return config

    def _check_variants(self, path: Path) -> None:
        """Each variant is a new name for a method with valid options and schedule (refused before any work)."""
        from .. import methods
        from ..recovery import SCHEDULE_FLAGS

        for name, variant in (self.variants or {}).items():
            if not isinstance(variant, dict) or "method" not in variant or set(variant) - set(VARIANT_KEYS):
                raise ValueError(f"{path}: variant {name!r} is {{method: NAME, options: {{PART.NAME: value}}, "
                                 f"schedule: {{iterations: N, ...}}}} (options and schedule optional), not {variant!r}")
            try:
                methods.get(name)
            except (KeyError, ValueError):
                pass
            else:
                raise ValueError(f"{path}: variant {name!r} is already the name of a method; give it its own")
            unknown = set(variant.get("schedule") or {}) - set(SCHEDULE_FLAGS)
            if unknown:
                raise ValueError(f"{path}: variant {name!r}: a schedule sets {', '.join(SCHEDULE_FLAGS)} (as prune's "
                                 f"flags), not {sorted(unknown)}")
            try:
                variant_recipe(variant)
            except (KeyError, ValueError) as error:
                raise ValueError(f"{path}: variant {name!r}: {error.args[0] if error.args else error}") from None
        unused = sorted(set(self.variants or {}) - set(self.methods))
        if unused:
            raise ValueError(f"{path}: variants {unused} are not among the sweep's methods {self.methods}")

    def _check_comparisons(self, path: Path) -> None:
        """Each ``compare`` entry names two of the sweep's methods that run at some common target, or, with
        ``at: speed-up``, that are timed (the second's accuracy is then read at the first's measured speed-ups)."""
        if not self.compare:
            return
        targets: dict[str, set[str]] = {}
        for cell in self.cells():
            targets.setdefault(cell.method, set()).add(json.dumps(cell.target, sort_keys=True))
        for entry in self.compare:
            if not isinstance(entry, dict) or set(entry) - {"methods", "note", "at"} or "methods" not in entry:
                raise ValueError(f"{path}: each compare entry is {{methods: [first, second], note: ..., at: ...}} "
                                 f"(note and at optional), not {entry!r}")
            at = entry.get("at", "target")
            if at not in COMPARE_AT:
                raise ValueError(f"{path}: compare {entry['methods']!r}: at is one of {list(COMPARE_AT)}, not {at!r}")
            pair = entry["methods"]
            if not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"{path}: compare methods must be two different methods, not {pair!r}")
            unknown = [m for m in pair if m not in self.methods]
            if unknown:
                raise ValueError(f"{path}: compare names {unknown}, not among the sweep's methods {self.methods}")
            if at == "speed-up" and not self.latency:
                raise ValueError(f"{path}: compare {pair} at speed-up needs the cells timed (latency: true)")
            if at == "target" and not targets.get(pair[0], set()) & targets.get(pair[1], set()):
                raise ValueError(f"{path}: compare {pair}: the two never run at the same target (one prunes "
                                 "channels, the other drops blocks), so no seed pairs them; 'at: speed-up' "
                                 "compares them at equal measured speed-up")

    def cells(self) -> list[Cell]:
        """Every combination, except a block-level method with a width target or vice versa.

        So one sweep can compare filter pruning at MAC targets with block dropping at block counts.
        """
        from ..methods import get as method

        variants = self.variants or {}

        def fits(name: str, target: dict) -> bool:
            try:  # a width target with blocks= (depth and width) suits a channel method
                granularity = method(variants[name]["method"] if name in variants else name).granularity
                return (granularity == "blocks") == (set(target) == {"blocks"})
            except (KeyError, ValueError):
                return True  # an unknown method still gets its cell, which records the error

        # Seeds outermost: a sweep stopped part-way has whole seeds, not some settings with three and some with none.
        return [
            Cell(model, name, n, dict(target), seed, self.dataset, self.per_class, self.labels, self.round_to,
                 self.min_width, normal_variant(variants[name]) if name in variants else None,
                 tuple(self.plugins or ()))
            for seed, model, target, n, name in itertools.product(
                self.seeds, self.models, self.targets, self.samples, self.methods)
            if fits(name, target)
        ]


def normal_variant(variant: dict) -> dict:
    """A variant with its optional parts present and its keys sorted, so a cell's key does not depend on how the
    YAML wrote it."""
    return {"method": variant["method"], "options": dict(sorted((variant.get("options") or {}).items())),
            "schedule": dict(sorted((variant.get("schedule") or {}).items()))}

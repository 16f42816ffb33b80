"""The full-data ceiling: a pruned structure fine-tuned on the whole training split.

It tells how much of a few-sample method's gap to the teacher is the
structure's fault and how much the data's. Computed once per (model, target)
and cached in the results file. A width target uses the structure of
data-free ``l1`` pruning; a block count the blocks that a block criterion
(the config's ``ceiling: {blocks: NAME}``) picks on a fixed draw of
``BLOCK_SAMPLES`` training images, labels hidden.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from ..checkpoints import job_checkpoint
from ..devices import resolve_device
from .runner import _load_data, _teacher, measure_model, on_cpu

BLOCK_SAMPLES = 500  # images (seed 0) a block criterion sees to pick a block ceiling's blocks


def run_ceiling(model: str, dataset: str, target: dict, epochs: int = 3, lr: float = 0.01, batch_size: int = 128,
                eval_limit: int | None = None, latency: bool = True, log=print, checkpoint=None,
                block_structure: str | None = None, device=None) -> dict:
    """The ceiling's row; with a ``checkpoint`` path the fine-tuning resumes from its last finished epoch. The
    fine-tuning runs on ``device`` (the CPU by default; elsewhere nothing is timed).

    A block-count ``target`` needs ``block_structure``, the block criterion that picks the blocks.
    """
    from .. import api, data
    from ..allocation import Target
    from ..metrics import versions
    from ..models.recipes import Recipe, fit

    started = time.time()
    train, test = _load_data(dataset, eval_limit, model)
    teacher = _teacher(model, train.info)
    example = train.batch([0])[0]
    if set(target) == {"blocks"}:
        if block_structure is None:
            raise ValueError("a full-data ceiling at a block count needs the block criterion that picks the blocks "
                             "(ceiling: {blocks: block-residual} in the sweep config)")
        samples, method, seen = data.few_shot(train, n=BLOCK_SAMPLES, seed=0), block_structure, BLOCK_SAMPLES
    else:  # the l1 structure needs no data beyond one example for shapes
        samples, method, seen = (example, None), "l1", 0
    structure = api.compress(teacher, samples, method=method, target=Target(**target), labels=False, progress=False)
    student = copy.deepcopy(structure.student).to(resolve_device(device))  # the structure is chosen on the CPU
    recipe = Recipe(architecture="", dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr,
                    weight_decay=5e-4, warmup_epochs=0.0)
    seconds = fit(student, train, recipe, checkpoint, log=log, name=f"ceiling {model} {target}")
    row = {"kind": "ceiling", "key": ceiling_key(model, dataset, target, epochs, lr, eval_limit, block_structure),
           "model": model, "dataset": dataset, "target": target, "structure": method, "epochs": epochs, "lr": lr,
           **({"structure_samples": seen, "dropped_blocks": list(structure.plan.dropped_blocks)} if seen else {})}
    row.update(measure_model(student, test, example, latency and on_cpu(device)))
    if not on_cpu(device):
        row["device"] = str(device)
    row.update(status="ok", macs_reduction=structure.report["macs_reduction"],
               params_reduction=structure.report["params_reduction"], teacher_macs=structure.report["teacher"]["macs"],
               plan_removed={g: len(r) for g, r in structure.plan.removed.items()}, train_seconds=round(seconds, 1),
               wall_seconds=round(time.time() - started, 1), versions=versions(), threads=torch.get_num_threads())
    return row


def ceiling_key(model: str, dataset: str, target: dict, epochs: int, lr: float, eval_limit,
                block_structure: str | None = None) -> str:
    what = "+".join(f"{kind}={value}" for kind, value in target.items())
    if set(target) == {"blocks"}:  # which blocks depends on the criterion that picks them
        what += f":{block_structure}@{BLOCK_SAMPLES}"
    return f"ceiling:{model}:{dataset}:{what}:e{epochs}:lr{lr}:{eval_limit}"


@dataclass
class CeilingJob:
    """One ceiling to compute, run by the same executors as the cells (it is the longest job of a sweep)."""

    model: str
    dataset: str
    target: dict
    epochs: int
    lr: float
    eval_limit: int | None = None
    work_dir: str | None = None  # where its checkpoint lives while it runs (None: it keeps none)
    block_structure: str | None = None  # the block criterion picking a block-count ceiling's blocks (a width
    #                                     ceiling ignores it: its structure is l1's)

    @property
    def key(self) -> str:
        return ceiling_key(self.model, self.dataset, self.target, self.epochs, self.lr, self.eval_limit,
                           self.block_structure)

    def describe(self) -> str:
        return f"full-data ceiling for {self.model} at {self.target} ({self.epochs} epochs)"

    def run(self, eval_limit, latency: bool, device=None) -> dict:
        """The ceiling's row; a failure becomes an error row, so the sweep goes on (``--retry-failed`` re-runs it)."""
        checkpoint = job_checkpoint(self.work_dir, self.key)
        try:
            row = run_ceiling(self.model, self.dataset, self.target, self.epochs, self.lr, eval_limit=eval_limit,
                              latency=latency, log=lambda *_: None, checkpoint=checkpoint,
                              block_structure=self.block_structure, device=device)
            if checkpoint is not None:
                checkpoint.unlink(missing_ok=True)
            return row
        except Exception as error:  # noqa: BLE001 — recorded, like a failing cell
            return {"kind": "ceiling", "key": self.key, "model": self.model, "target": self.target,
                    "status": "error", "error": f"{type(error).__name__}: {error}"}

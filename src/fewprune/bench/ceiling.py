"""The full-data ceiling: a pruned structure fine-tuned on the whole training split.

It tells how much of a few-sample method's gap to the teacher is the
structure's fault and how much the data's. Computed once per (model, target)
on the structure of data-free ``l1`` pruning and cached in the results file.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from ..checkpoints import job_checkpoint
from .runner import _load_data, _teacher, measure_model


def run_ceiling(model: str, dataset: str, target: dict, epochs: int = 3, lr: float = 0.01, batch_size: int = 128,
                eval_limit: int | None = None, latency: bool = True, log=print, checkpoint=None) -> dict:
    """The ceiling's row; with a ``checkpoint`` path the fine-tuning resumes from its last finished epoch."""
    from .. import api
    from ..allocation import Target
    from ..metrics import versions
    from ..models.recipes import Recipe, fit

    started = time.time()
    train, test = _load_data(dataset, eval_limit)
    teacher = _teacher(model, train.info)
    example = train.batch([0])[0]
    # The l1 structure needs no data beyond one example for shapes.
    structure = api.compress(teacher, (example, None), method="l1", target=Target(**target), progress=False)
    student = copy.deepcopy(structure.student)
    recipe = Recipe(architecture="", dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr,
                    weight_decay=5e-4, warmup_epochs=0.0)
    seconds = fit(student, train, recipe, checkpoint, log=log, name=f"ceiling {model} {target}")
    row = {"kind": "ceiling", "key": ceiling_key(model, dataset, target, epochs, lr, eval_limit), "model": model,
           "dataset": dataset, "target": target, "structure": "l1", "epochs": epochs, "lr": lr}
    row.update(measure_model(student, test, example, latency))
    row.update(status="ok", macs_reduction=structure.report["macs_reduction"], train_seconds=round(seconds, 1),
               wall_seconds=round(time.time() - started, 1), versions=versions(), threads=torch.get_num_threads())
    return row


def ceiling_key(model: str, dataset: str, target: dict, epochs: int, lr: float, eval_limit) -> str:
    what = "+".join(f"{kind}={value}" for kind, value in target.items())
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

    @property
    def key(self) -> str:
        return ceiling_key(self.model, self.dataset, self.target, self.epochs, self.lr, self.eval_limit)

    def describe(self) -> str:
        return f"full-data ceiling for {self.model} at {self.target} ({self.epochs} epochs)"

    def run(self, eval_limit, latency: bool) -> dict:
        """The ceiling's row; a failure becomes an error row, so the sweep goes on (``--retry-failed`` re-runs it)."""
        checkpoint = job_checkpoint(self.work_dir, self.key)
        try:
            row = run_ceiling(self.model, self.dataset, self.target, self.epochs, self.lr, eval_limit=eval_limit,
                              latency=latency, log=lambda *_: None, checkpoint=checkpoint)
            if checkpoint is not None:
                checkpoint.unlink(missing_ok=True)
            return row
        except Exception as error:  # noqa: BLE001 — recorded, like a failing cell
            return {"kind": "ceiling", "key": self.key, "model": self.model, "target": self.target,
                    "status": "error", "error": f"{type(error).__name__}: {error}"}

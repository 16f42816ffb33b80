"""ASCA from scratch as a sweep job: gates and weights learned on the full training set, no teacher weights.

A zoo model ``zoo:NAME`` names its training recipe ``NAME``; the job trains
that architecture from scratch towards each width target and measures the
pruned result on the test split. Set ``ceiling`` to the same epochs to get
the comparison the paper makes: the zoo teacher pruned by L1 and fine-tuned
on the full set for the same number of epochs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import torch

from ..checkpoints import job_checkpoint
from .runner import _load_data, measure_model, on_cpu


def scratch_label(gates: dict | None) -> str:
    """How reports and status name an asca-scratch job: ``asca-scratch`` or ``asca-scratch (price=channels)``."""
    changes = ", ".join(f"{k}={v}" for k, v in sorted((gates or {}).items()))
    return f"asca-scratch ({changes})" if changes else "asca-scratch"


@dataclass
class ScratchJob:
    model: str
    dataset: str
    target: dict
    epochs: int
    eval_limit: int | None = None
    work_dir: str | None = None  # where its checkpoint lives while it runs (None: it keeps none)
    gates: dict = field(default_factory=dict)  # changes to the gate schedule (GateSchedule fields); {}: none

    @property
    def key(self) -> str:
        (kind, value), = self.target.items()
        changes = f":{json.dumps(self.gates, sort_keys=True)}" if self.gates else ""  # the default keeps its old key
        return f"asca-scratch:{self.model}:{self.dataset}:{kind}={value}:e{self.epochs}:{self.eval_limit}{changes}"

    def describe(self) -> str:
        changes = f", gates {self.gates}" if self.gates else ""
        return f"asca-scratch for {self.model} at {self.target} ({self.epochs} epochs, full training set{changes})"

    def run(self, eval_limit, latency: bool, device=None) -> dict:
        """The job's row; a failure becomes an error row, so the sweep goes on. It trains on the CPU only."""
        from ..allocation import Target
        from ..metrics import versions
        from ..models.recipes import train_asca_scratch

        row = {"kind": "scratch", "key": self.key, "model": self.model, "dataset": self.dataset, "target": self.target,
               "epochs": self.epochs, **({"gates_schedule": self.gates} if self.gates else {})}
        started = time.time()
        try:
            if not on_cpu(device):
                raise ValueError(f"asca-scratch trains on the CPU, not {device}: run this job without --device")
            if not self.model.startswith("zoo:"):
                raise ValueError(f"asca-scratch needs a training recipe: use a zoo:NAME model, not {self.model!r}")
            train, test = _load_data(self.dataset, eval_limit, self.model)
            checkpoint = job_checkpoint(self.work_dir, self.key)
            result = train_asca_scratch(self.model.removeprefix("zoo:"), Target(**self.target), epochs=self.epochs,
                                        progress=False, log=lambda *_: None, train_set=train, checkpoint=checkpoint,
                                        gates=self.gates)
            row.update(measure_model(result.student, test, train[0][0].unsqueeze(0), latency))
            row.update(status="ok", macs_reduction=result.report["macs_reduction"],
                       params_reduction=result.report["params_reduction"],
                       teacher_macs=result.report["teacher"]["macs"],
                       plan_removed={g: len(r) for g, r in result.plan.removed.items()}, dropped_blocks=[],
                       gates=result.report["criterion"]["gates"]["widths"],
                       train_seconds=result.report["timings"]["train_s"])
            if checkpoint is not None:
                checkpoint.unlink(missing_ok=True)
        except Exception as error:  # noqa: BLE001 — recorded, like a failing cell
            row.update(status="error", error=f"{type(error).__name__}: {error}")
        row.update(wall_seconds=round(time.time() - started, 1), versions=versions(), threads=torch.get_num_threads())
        return row

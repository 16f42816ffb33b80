"""Recovery: train the pruned student back from the teacher on the few samples."""

from . import baselines, cd, fskd, lsq, mir, practise  # noqa: F401  (registration)
from .base import (
    SCHEDULE_FLAGS,
    RecoveryDiverged,
    Schedule,
    all_trainable,
    augment_batch,
    projected_seconds,
    recoveries,
    register_recovery,
    train_student,
)

__all__ = [
    "SCHEDULE_FLAGS", "RecoveryDiverged", "Schedule",
    "all_trainable", "augment_batch", "projected_seconds", "recoveries", "register_recovery", "train_student",
]

"""Recovery: train the pruned student back from the teacher on the few samples."""

from . import baselines, cd, fskd, lsq, mir, practise  # noqa: F401  (registration)
from .base import (
    SCHEDULE_FLAGS,
    RecoveryDiverged,
    Schedule,
    all_trainable,
    augment_batch,
    recoveries,
    register_recovery,
    train_student,
    training_step_seconds,
)

__all__ = [
    "SCHEDULE_FLAGS", "RecoveryDiverged", "Schedule",
    "all_trainable", "augment_batch", "recoveries", "register_recovery", "train_student",
    "training_step_seconds",
]

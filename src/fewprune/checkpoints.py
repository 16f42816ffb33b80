"""Checkpoints that let hours-long CPU runs stop and resume where they were.

Teacher training, full-data ceilings and ASCA from scratch save their whole
state (weights, optimiser, schedule, random stream) now and then; a run
started again with the same checkpoint path goes on from there and ends
with the same result an uninterrupted run gives. Loading is
``weights_only``: a checkpoint holds tensors and plain values, no pickled code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .files import atomic_path


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` through a temporary file, so an interrupted write leaves the previous checkpoint whole."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path | None, run: str) -> dict | None:
    """The state saved at ``path`` by the run described by ``run``; None when there is none.

    A checkpoint of another run (other settings, another schedule) is
    refused with its path, so a resumed run never mixes two runs' states.
    """
    if path is None or not Path(path).exists():
        return None
    state = torch.load(path, weights_only=True, map_location="cpu")  # resumable on any device
    saved = state.get("run", run)  # teacher checkpoints written before runs were named carry no name
    if saved != run:
        raise ValueError(f"{path} is the checkpoint of another run ({saved}), not of this one ({run}): "
                         f"remove it, or choose another output")
    return state


def job_checkpoint(work_dir: str | Path | None, key: str) -> Path | None:
    """Where a sweep job with ``key`` keeps its checkpoint under ``work_dir`` (None: it keeps none)."""
    if work_dir is None:
        return None
    import hashlib

    return Path(work_dir) / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"


def checkpoint_progress(path: Path | None) -> tuple[int, int] | None:
    """(steps done, steps in all) of the run saved at ``path`` (epochs or iterations); None when it does not say."""
    if path is None or not Path(path).exists():
        return None
    try:
        progress = torch.load(path, weights_only=True, mmap=True).get("progress")  # mmap: the tensors stay unread
    except Exception:  # noqa: BLE001 — a checkpoint being replaced right now, or a damaged one: no progress known
        return None
    return tuple(progress) if progress else None

"""Deterministic few-shot subsets."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch.utils.data import Dataset


class FewShot(Dataset):
    """A subset of a dataset that remembers which indices it holds (for reports and replays)."""

    def __init__(self, dataset, indices: list[int], seed: int):
        self.dataset = dataset
        self.indices = list(map(int, indices))
        self.seed = seed
        self.info = dataset.info
        self.targets = dataset.targets[torch.tensor(self.indices, dtype=torch.long)]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images and labels as two tensors (the few samples always fit in memory)."""
        if hasattr(self.dataset, "batch"):
            return self.dataset.batch(self.indices)
        pairs = [self.dataset[i] for i in self.indices]
        return torch.stack([p[0] for p in pairs]), torch.tensor([int(p[1]) for p in pairs])

    def indices_hash(self) -> str:
        """A short fingerprint of the chosen indices, for reports and result caches."""
        return hashlib.sha256(",".join(map(str, self.indices)).encode()).hexdigest()[:16]


def few_shot(dataset, n: int | None = None, per_class: int | None = None, seed: int = 0) -> FewShot:
    """Draw ``n`` random samples, or ``per_class`` samples of every class, deterministically from ``seed``."""
    if (n is None) == (per_class is None):
        raise ValueError("give exactly one of n= or per_class=")
    rng = np.random.default_rng(seed)
    targets = np.asarray(dataset.targets)
    if per_class is not None:
        if per_class < 1:
            raise ValueError("per_class must be at least 1")
        chosen = []
        for c in np.unique(targets):
            members = np.flatnonzero(targets == c)
            if len(members) < per_class:
                raise ValueError(f"class {c} has only {len(members)} samples, fewer than per_class={per_class}")
            chosen.extend(rng.choice(members, size=per_class, replace=False).tolist())
        chosen.sort()
    else:
        if not 1 <= n <= len(targets):
            raise ValueError(f"n must be between 1 and {len(targets)}, got {n}")
        chosen = sorted(rng.choice(len(targets), size=n, replace=False).tolist())
    return FewShot(dataset, chosen, seed)

"""Top-1 and per-class accuracy over a dataset."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..modes import eval_mode
from ..progress import progress_bar


@torch.no_grad()
def predict(model: nn.Module, dataset, batch_size: int = 256, progress: bool = True,
            description: str = "evaluating") -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and true labels for every item of ``dataset`` (model run in eval mode, restored after)."""
    preds, labels = [], []
    with eval_mode(model):
        if hasattr(dataset, "batch"):  # in-memory datasets: skip the per-item collate
            chunks = [range(i, min(i + batch_size, len(dataset))) for i in range(0, len(dataset), batch_size)]
            batches = (dataset.batch(list(c)) for c in chunks)
            total = len(chunks)
        else:
            batches = DataLoader(dataset, batch_size=batch_size)
            total = len(batches)
        for x, y in progress_bar(batches, total=total, description=description, enabled=progress):
            preds.append(model(x).argmax(1))
            labels.append(torch.as_tensor(y))
    return torch.cat(preds), torch.cat(labels)


def evaluate(model: nn.Module, dataset, batch_size: int = 256, progress: bool = True) -> dict:
    """``{"accuracy", "per_class", "samples"}`` of ``model`` on ``dataset``."""
    pred, true = predict(model, dataset, batch_size, progress)
    num_classes = getattr(getattr(dataset, "info", None), "num_classes", int(true.max()) + 1)
    per_class = []
    for c in range(num_classes):
        members = true == c
        per_class.append(round((pred[members] == c).float().mean().item(), 6) if members.any() else None)
    return {
        "accuracy": round((pred == true).float().mean().item(), 6),
        "per_class": per_class,
        "samples": len(true),
    }

"""Top-1 and per-class accuracy over a dataset; top-1 agreement with a teacher where there are no labels."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..modes import eval_mode
from ..progress import progress_bar


@torch.no_grad()
def predict(model: nn.Module, dataset, batch_size: int = 256, progress: bool = True,
            description: str = "evaluating") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predicted classes and true labels (None for unlabelled images) for every item of ``dataset``.

    The model runs in eval mode, restored after.
    """
    preds, labels = [], []
    with eval_mode(model):
        if hasattr(dataset, "batch"):  # in-memory datasets: skip the per-item collate
            chunks = [range(i, min(i + batch_size, len(dataset))) for i in range(0, len(dataset), batch_size)]
            batches = (dataset.batch(list(c)) for c in chunks)
            total = len(chunks)
        else:
            batches = DataLoader(dataset, batch_size=batch_size)
            total = len(batches)
        for batch in progress_bar(batches, total=total, description=description, enabled=progress):
            x, y = (batch[0], batch[1]) if isinstance(batch, tuple | list) else (batch, None)
            preds.append(model(x).argmax(1))
            if y is not None:
                labels.append(torch.as_tensor(y))
    return torch.cat(preds), (torch.cat(labels) if labels else None)


def evaluate(model: nn.Module, dataset, batch_size: int = 256, progress: bool = True) -> dict:
    """``{"accuracy", "per_class", "samples"}`` of ``model`` on ``dataset``."""
    pred, true = predict(model, dataset, batch_size, progress)
    if true is None:
        name = getattr(getattr(dataset, "info", None), "name", type(dataset).__name__)
        raise ValueError(f"{name} has no labels: accuracy needs labelled images (one folder per class); "
                         "without labels, compare a student with its teacher (top-1 agreement, as prune reports)")
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


def agreement(model: nn.Module, dataset, reference: torch.Tensor, batch_size: int = 256,
              progress: bool = True) -> dict:
    """``{"agreement", "samples"}``: the fraction of ``dataset``'s images on which ``model`` predicts the class
    in ``reference`` (e.g. the teacher's predictions, from :func:`predict`); no label is read."""
    pred, _ = predict(model, dataset, batch_size, progress)
    if len(pred) != len(reference):
        raise ValueError(f"{len(reference)} reference predictions for {len(pred)} images")
    return {"agreement": round((pred == reference).float().mean().item(), 6), "samples": len(pred)}

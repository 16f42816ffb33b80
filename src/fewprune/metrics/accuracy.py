"""Top-1 and per-class accuracy over a dataset; top-1 agreement with a teacher where there are no labels."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.base import IGNORE_LABEL
from ..devices import model_device
from ..models.outputs import main_output
from ..modes import eval_mode
from ..progress import progress_bar


@torch.no_grad()
def predict(model: nn.Module, dataset, batch_size: int = 256, progress: bool = True,
            description: str = "evaluating") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predicted classes and true labels (None for unlabelled images) for every item of ``dataset``.

    The model runs in eval mode, restored after, on its own device (images are moved there); the
    predictions come back on the CPU.
    """
    preds, labels = [], []
    device = model_device(model)
    with eval_mode(model):
        if hasattr(dataset, "batch"):  # in-memory datasets: skip the per-item collate
            chunks = [range(i, min(i + batch_size, len(dataset))) for i in range(0, len(dataset), batch_size)]
            batches = (dataset.batch(list(c)) for c in chunks)
            total = len(chunks)
        else:
            batches = DataLoader(dataset, batch_size=batch_size)
            total = len(batches)
        for batch in progress_bar(batches, total=total, description=description, enabled=progress):
            if isinstance(batch, tuple | list):  # (images, labels, …), or (images,) from a TensorDataset of images
                x, y = batch[0], (batch[1] if len(batch) > 1 else None)
            else:
                x, y = batch, None
            # per image, or per pixel for a dense prediction; gathered on the CPU
            preds.append(main_output(model(x.to(device))).argmax(1).cpu())
            if y is not None:
                labels.append(torch.as_tensor(y))
    return torch.cat(preds), (torch.cat(labels) if labels else None)


def evaluate(model: nn.Module, dataset, batch_size: int = 256, progress: bool = True,
             num_classes: int | None = None) -> dict:
    """``{"accuracy", "per_class", "samples"}`` of ``model`` on ``dataset``; for a dense prediction (a class per
    pixel, against label masks) the pixel accuracy, per-class pixel recall and ``"mean_iou"``. ``num_classes``
    defaults to the dataset's ``info`` (else the largest class predicted or labelled + 1); a mask label outside it
    is ignored."""
    pred, true = predict(model, dataset, batch_size, progress)
    if true is None:
        name = getattr(getattr(dataset, "info", None), "name", type(dataset).__name__)
        raise ValueError(f"{name} has no labels: accuracy needs labelled images (one folder per class); "
                         "without labels, compare a student with its teacher (top-1 agreement, as prune reports)")
    num_classes = num_classes or getattr(getattr(dataset, "info", None), "num_classes", 0) or _classes_seen(pred, true)
    samples = len(true)
    dense = pred.ndim > 1  # a class per pixel (segmentation): label masks, where an out-of-range label is ignored
    if dense:
        valid = (true >= 0) & (true < num_classes)
        pred, true = pred[valid], true[valid]
    per_class = []
    for c in range(num_classes):
        members = true == c
        per_class.append(round((pred[members] == c).float().mean().item(), 6) if members.any() else None)
    result = {
        "accuracy": round((pred == true).float().mean().item(), 6),
        "per_class": per_class,
        "samples": samples,
    }
    if dense:
        result["mean_iou"] = round(mean_iou(pred, true, num_classes), 6)
    return result


def _classes_seen(pred: torch.Tensor, true: torch.Tensor) -> int:
    """The largest class predicted or labelled, + 1, where no class count is known (a mask's ``IGNORE_LABEL`` is
    no class)."""
    labelled = true[true != IGNORE_LABEL] if pred.ndim > 1 else true
    return int(max(pred.max(), labelled.max() if labelled.numel() else 0)) + 1


def mean_iou(pred: torch.Tensor, true: torch.Tensor, num_classes: int) -> float:
    """Mean intersection over union of the classes that occur in ``true`` or ``pred`` (labels in range)."""
    confusion = torch.bincount(true.long() * num_classes + pred.long(), minlength=num_classes ** 2)
    confusion = confusion.reshape(num_classes, num_classes).double()
    hits = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - hits
    present = union > 0
    return float((hits[present] / union[present]).mean()) if present.any() else 0.0


def agreement(model: nn.Module, dataset, reference: torch.Tensor, batch_size: int = 256,
              progress: bool = True) -> dict:
    """``{"agreement", "samples"}``: the fraction of ``dataset``'s images (pixels, for a dense prediction) on
    which ``model`` predicts the class in ``reference`` (e.g. the teacher's predictions, from :func:`predict`);
    no label is read."""
    pred, _ = predict(model, dataset, batch_size, progress)
    if len(pred) != len(reference):
        raise ValueError(f"{len(reference)} reference predictions for {len(pred)} images")
    return {"agreement": round((pred == reference).float().mean().item(), 6), "samples": len(pred),
            **({"per_pixel": True} if pred.ndim > 1 else {})}

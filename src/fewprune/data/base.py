"""In-memory image datasets with the metadata every later stage needs."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

IGNORE_LABEL = 255  # a mask pixel labelled so is left out of losses and scores (the "void" of segmentation sets)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a report need to know about a dataset."""

    name: str
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]  # (channels, height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split: str = "train"
    source: str = ""
    task: str = "classification"  # or "segmentation": the labels are masks, one class per pixel
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def input_convention(self) -> dict:
        """How these images became a model's input, as :func:`~fewprune.data.input_convention` takes it (recorded
        with a result, so the result reads an image folder the same way): an image folder's own, a built-in
        dataset's images taken as they are; with the class names, if known, in label order."""
        return {"image_size": self.input_shape[1], "channels": self.input_shape[0], "mean": list(self.mean),
                "std": list(self.std), "resize": self.extra.get("resize", "fit"),
                "interpolation": self.extra.get("interpolation", "bilinear"),
                **({"classes": list(self.classes)} if self.classes else {})}


class ImageTensorDataset(Dataset):
    """Images kept as one uint8 tensor ``N×C×H×W`` plus labels, normalised on access.

    Keeping raw bytes (not floats) costs 4× less memory, and ``batch`` gives
    whole normalised mini-batches without a per-item Python loop. Labels are
    one class per image (``N``), or label masks (``N×H×W``, one class per
    pixel), which stay in their own (small) dtype until a batch is taken.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be a uint8 tensor of shape N×C×H×W")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.targets = labels.long() if labels.ndim == 1 else labels
        self.info = info
        self._mean = torch.tensor(info.mean).view(1, -1, 1, 1)
        self._std = torch.tensor(info.std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """uint8 ``N×C×H×W`` → normalised float."""
        return (raw.float() / 255.0 - self._mean) / self._std

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images and labels for ``indices`` in one call."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.normalise(self.images[idx]), self.targets[idx].long()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        label = self.targets[index]
        return self.normalise(self.images[index : index + 1])[0], (int(label) if label.ndim == 0 else label.long())

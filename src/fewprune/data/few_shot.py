"""Deterministic few-shot subsets, and the few samples read from whatever holds them."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch.utils.data import Dataset


def _image_and_label(item) -> tuple[torch.Tensor, object]:
    """An item or batch as (images, label or labels or None): a tensor, or a tuple/list led by one."""
    if isinstance(item, tuple | list):
        images, label = item[0], (item[1] if len(item) > 1 else None)
    else:
        images, label = item, None
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"the samples' images must be tensors, got {type(images).__name__}: give the dataset a "
                        "transform that makes tensors (e.g. torchvision.transforms.ToTensor() and the "
                        "teacher's normalisation)")
    return images, label


def read_samples(source) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All images (N×C×H×W float) and labels (or None) of a map-style dataset or an iterable of batches.

    A dataset's items, or a DataLoader's batches, are an image tensor or an
    ``(image, label, ...)`` tuple; the few samples always fit in memory.
    Labels are kept only if every item has one.
    """
    from torch.utils.data import DataLoader

    indexable = hasattr(source, "__getitem__") and hasattr(source, "__len__") and not isinstance(source, DataLoader)
    items = (source[i] for i in range(len(source))) if indexable else iter(source)
    images, labels = [], []
    for item in items:
        x, y = _image_and_label(item)
        batched = x.ndim == 4
        images.append(x if batched else x.unsqueeze(0))
        if y is not None:
            y = torch.as_tensor(y, dtype=torch.long)
            if y.ndim == (3 if batched else 2):  # label masks (a class per pixel): N×H×W, or H×W for one image
                labels.append(y if batched else y.unsqueeze(0))
            else:
                labels.append(y.reshape(-1) if batched else y.reshape(1))
    if not images:
        raise ValueError("the samples are empty")
    if any(x.ndim != 4 for x in images):
        raise ValueError(f"each image must be C×H×W (or a batch N×C×H×W), got shape {tuple(images[0].shape[1:])}")
    images_tensor = torch.cat(images).float()
    if not labels:
        return images_tensor, None
    labels_tensor = torch.cat(labels)
    if len(labels_tensor) != len(images_tensor):
        raise ValueError(f"{len(images_tensor)} images but {len(labels_tensor)} labels: some items have no label")
    return images_tensor, labels_tensor


class FewShot(Dataset):
    """A subset of a dataset that remembers which indices it holds (for reports and replays).

    ``dataset`` is a fewprune dataset (:func:`fewprune.data.load`) or any
    map-style torch dataset of image tensors or ``(image, label)`` items.
    """

    def __init__(self, dataset, indices: list[int], seed: int):
        self.dataset = dataset
        self.indices = list(map(int, indices))
        self.seed = seed
        self.info = getattr(dataset, "info", None)  # a DatasetInfo: name, split, classes (fewprune's datasets)
        targets = getattr(dataset, "targets", None)
        self.targets = (None if targets is None
                        else torch.as_tensor(targets)[torch.tensor(self.indices, dtype=torch.long)])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All images and labels as two tensors (labels None for a dataset of images alone)."""
        return self.batch(range(len(self)))

    def batch(self, positions) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The images and labels at ``positions`` of this subset, as a fewprune dataset's ``batch`` gives them."""
        indices = [self.indices[i] for i in positions]
        if hasattr(self.dataset, "batch"):
            return self.dataset.batch(indices)
        return read_samples([self.dataset[i] for i in indices])

    def indices_hash(self) -> str:
        """A short fingerprint of the chosen indices, for reports and result caches."""
        return hashlib.sha256(",".join(map(str, self.indices)).encode()).hexdigest()[:16]


def split_off(dataset, fraction: float, seed: int = 0) -> tuple[FewShot, FewShot]:
    """``dataset`` cut in two at random (deterministically from ``seed``): the rest, and ``fraction`` of its images
    (at least one) held out, e.g. as the test set of a folder that has no test split."""
    if not 0 < fraction < 1 or len(dataset) < 2:
        raise ValueError(f"cannot hold out {fraction} of {len(dataset)} images")
    order = np.random.default_rng(seed).permutation(len(dataset))
    held = max(1, round(fraction * len(dataset)))
    return FewShot(dataset, sorted(order[held:].tolist()), seed), FewShot(dataset, sorted(order[:held].tolist()), seed)


def few_shot(dataset, n: int | None = None, per_class: int | None = None, seed: int = 0) -> FewShot:
    """Draw ``n`` random samples, or ``per_class`` samples of every class, deterministically from ``seed``.

    ``dataset`` is any map-style dataset; ``per_class`` needs its labels as
    ``dataset.targets`` (fewprune's and torchvision's datasets have them).
    """
    if (n is None) == (per_class is None):
        raise ValueError("give exactly one of n= or per_class=")
    info = getattr(dataset, "info", None)
    what = info.name if info is not None else type(dataset).__name__
    rng = np.random.default_rng(seed)
    if getattr(dataset, "targets", None) is None:
        if per_class is not None:
            raise ValueError(f"per_class= needs the dataset's labels as .targets, which {what} does not have (its "
                             "images are unlabelled): draw n= samples instead (CLI --per-class, --samples)")
        targets = np.zeros(len(dataset))  # n= needs only the count
    else:
        targets = np.asarray(dataset.targets)
    if per_class is not None:
        if targets.ndim > 1:
            raise ValueError(f"per_class= needs one class per image; {what}'s labels are masks (a class per "
                             "pixel): draw n= samples instead (CLI --per-class, --samples)")
        if per_class < 1:
            raise ValueError(f"per_class must be at least 1, not {per_class} (CLI --per-class)")
        chosen = []
        for c in np.unique(targets):
            members = np.flatnonzero(targets == c)
            if len(members) < per_class:
                name = f"{info.classes[int(c)]!r} ({c})" if info is not None and 0 <= c < len(info.classes) else c
                raise ValueError(f"class {name} of {what} has only {len(members)} images, fewer than "
                                 f"per_class={per_class} (CLI --per-class)")
            chosen.extend(rng.choice(members, size=per_class, replace=False).tolist())
        chosen.sort()
    else:
        if not 1 <= n <= len(targets):
            raise ValueError(f"cannot draw {n} samples from {what}, which has {len(targets)} images: ask for 1 to "
                             f"{len(targets)} (n=, CLI --samples)")
        chosen = sorted(rng.choice(len(targets), size=n, replace=False).tolist())
    return FewShot(dataset, chosen, seed)

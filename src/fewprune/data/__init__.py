"""Datasets by name and the few-shot sampler. Nothing here downloads anything."""

from __future__ import annotations

from functools import partial

from ..registry import Registry
from .base import DatasetInfo, ImageTensorDataset
from .cifar import load_cifar
from .errors import DatasetNotFound
from .few_shot import FewShot, few_shot, split_off
from .idx import load_fashion_mnist, read_idx
from .imagefolder import INTERPOLATIONS, RESIZE_MODES, input_convention, load_image_folder
from .scenes import load_fashion_mnist_scenes

datasets: Registry = Registry("dataset")
register_dataset = datasets.register
register_dataset("fashion-mnist", load_fashion_mnist)
register_dataset("fashion-mnist-scenes", load_fashion_mnist_scenes)
register_dataset("cifar10", partial(load_cifar, "cifar10"))
register_dataset("cifar100", partial(load_cifar, "cifar100"))


def load(name: str, split: str = "train", root: str | None = None, **options):
    """A dataset by name: ``fashion-mnist``, ``fashion-mnist-scenes`` (segmentation), ``cifar10``, ``cifar100``
    or ``imagefolder:PATH``.

    The result is a torch Dataset of ``(image tensor, label)`` with ``.info`` (a
    :class:`DatasetInfo`) and ``.targets`` (a label tensor). ``options`` go to
    the loader: for an image folder, the model's input convention
    (:func:`input_convention`), e.g. a zoo teacher's
    ``**fewprune.models.zoo.input_convention("resnet56-fmnist")``.
    """
    if name.startswith("imagefolder:"):
        return load_image_folder(name.split(":", 1)[1], split, **options)
    loader = datasets.get(name)
    return loader(split=split, root=root, **options)


__all__ = [
    "DatasetInfo", "DatasetNotFound", "FewShot", "ImageTensorDataset", "few_shot", "split_off", "load",
    "read_idx", "register_dataset", "datasets", "input_convention", "load_image_folder", "RESIZE_MODES",
    "INTERPOLATIONS",
]

"""Reader for the CIFAR-10/100 "python version" folders users keep locally.

The files are pickles. We never run an arbitrary unpickler on them: a restricted
unpickler admits only dicts, lists, strings, bytes and numpy arrays, so a
tampered file fails with an error instead of executing code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from .base import DatasetInfo, ImageTensorDataset
from .errors import DatasetNotFound

_NUMPY_MODULES = {
    "numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric",
}
_NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
_LAYOUT = {
    # name: (env var, default folder, train files, test files, meta file, label key, class-name key)
    "cifar10": ("FEWPRUNE_CIFAR10", "~/datasets/cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta", b"labels", b"label_names"),
    "cifar100": ("FEWPRUNE_CIFAR100", "~/datasets/cifar-100-python",
                 ["train"], ["test"], "meta", b"fine_labels", b"fine_label_names"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module in _NUMPY_MODULES and name in _NUMPY_NAMES:
            return super().find_class(module, name)
        if module == "numpy.dtypes" or (module == "builtins" and name in {"bytearray"}):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR file")


def read_cifar_pickle(path: str | Path) -> dict:
    """Load one CIFAR batch file with the restricted unpickler (keys stay ``bytes``)."""
    with open(path, "rb") as f:
        return _SafeUnpickler(f, encoding="bytes").load()


def _key(d: dict, key: bytes):
    return d[key] if key in d else d[key.decode()]


def load_cifar(name: str, split: str = "train", root: str | Path | None = None) -> ImageTensorDataset:
    """CIFAR-10 or CIFAR-100 from the python-pickle folder layout."""
    if split not in ("train", "test"):
        raise ValueError(f"{name} has splits 'train' and 'test', not {split!r}")
    env, default, train_files, test_files, meta_file, label_key, names_key = _LAYOUT[name]
    root = Path(os.path.expanduser(str(root or os.environ.get(env) or default)))
    files = train_files if split == "train" else test_files
    missing = [f for f in files + [meta_file] if not (root / f).exists()]
    if missing:
        raise DatasetNotFound(
            f"{name} files {missing} not found in {root}. Provide the extracted python version of the dataset "
            f"(the folder holding {', '.join(files)} and {meta_file}) via root= / --data-root or ${env}; "
            "fewprune never downloads data."
        )
    images, labels = [], []
    for f in files:
        batch = read_cifar_pickle(root / f)
        images.append(np.asarray(_key(batch, b"data"), dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(_key(batch, label_key))
    meta = read_cifar_pickle(root / meta_file)
    classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in _key(meta, names_key))
    info = DatasetInfo(
        name=name, classes=classes, input_shape=(3, 32, 32),
        mean=CIFAR_MEAN[name], std=CIFAR_STD[name], split=split, source=str(root),
    )
    return ImageTensorDataset(torch.from_numpy(np.concatenate(images)), torch.tensor(labels), info)

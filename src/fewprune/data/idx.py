"""Reader for the IDX format of (Fashion-)MNIST, gzipped or not."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from .base import DatasetInfo, ImageTensorDataset
from .errors import DatasetNotFound

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "FEWPRUNE_FASHION_MNIST"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Statistics of the 60k training images.
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` allowed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{dtype_code:02x}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=_IDX_DTYPES[dtype_code], offset=4 + 4 * ndim)
    expected = int(np.prod(shape)) if shape else 1
    if body.size != expected:
        raise ValueError(f"{path}: header promises {expected} elements, file holds {body.size}")
    return body.reshape(shape).astype(body.dtype.newbyteorder("="), copy=True)


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (root / name).exists():
            return root / name
    return None


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> ImageTensorDataset:
    """Fashion-MNIST from IDX files: ``root``, else ``$FEWPRUNE_FASHION_MNIST``, else Debian's folder."""
    if split not in ("train", "test"):
        raise ValueError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}")
    root = Path(root or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    prefix = "train" if split == "train" else "t10k"
    images_path = _find(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(root, f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise DatasetNotFound(
            f"Fashion-MNIST {split} files ({prefix}-images-idx3-ubyte[.gz], {prefix}-labels-idx1-ubyte[.gz]) "
            f"not found in {root}. Install Debian's package: `sudo apt-get install dataset-fashion-mnist` "
            f"(files land in {FASHION_MNIST_DIR}), or point ${FASHION_MNIST_ENV} / root= at a folder holding them."
        )
    images = torch.from_numpy(read_idx(images_path)).unsqueeze(1)
    labels = torch.from_numpy(read_idx(labels_path).astype(np.int64))
    info = DatasetInfo(
        name="fashion-mnist",
        classes=FASHION_MNIST_CLASSES,
        input_shape=(1, 28, 28),
        mean=FASHION_MNIST_MEAN,
        std=FASHION_MNIST_STD,
        split=split,
        source=str(root),
    )
    return ImageTensorDataset(images, labels, info)

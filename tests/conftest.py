import gzip
import os

import numpy as np
import pytest
import torch

# Threads follow OMP_NUM_THREADS (set it to 1 while a background job holds the cores).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", min(2, os.cpu_count() or 1))))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def untimed(monkeypatch):
    """Timing is not under test: every latency measurement reads 1 ms, at no cost."""
    from fewprune import metrics

    monkeypatch.setattr(metrics, "latency", lambda model, x: {"median_ms": 1.0, "p25_ms": 1.0, "p75_ms": 1.0,
                                                              "threads": 1})


def fashion_mnist_available() -> bool:
    from fewprune.data.idx import FASHION_MNIST_DIR

    return os.path.exists(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz"))


def write_idx(path, array: np.ndarray, compress: bool):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    payload = header + array.tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.fixture
def tiny_fmnist(tmp_path):
    rng = np.random.default_rng(1)
    for prefix, n, compress in (("train", 60, True), ("t10k", 40, False)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    return tmp_path

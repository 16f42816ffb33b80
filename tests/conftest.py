import os

import pytest
import torch

# Threads follow OMP_NUM_THREADS (set it to 1 while a background job holds the cores).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", min(2, os.cpu_count() or 1))))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def fashion_mnist_available() -> bool:
    from fewprune.data.idx import FASHION_MNIST_DIR

    return os.path.exists(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz"))

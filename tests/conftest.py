import os

import pytest
import torch

# Keep the suite's threads modest and its results repeatable.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def fashion_mnist_available() -> bool:
    from fewprune.data.idx import FASHION_MNIST_DIR

    return os.path.exists(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz"))

"""A user's own files for tests of paths: a small labelled image folder and a model file beside it."""

from pathlib import Path

import numpy as np
from PIL import Image

NET = """import torch.nn as nn
def make(num_classes=2, in_channels=3):
    return nn.Sequential(nn.Conv2d(in_channels, 16, 3, stride=4), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=4), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))
"""


def write_photos_and_net(folder: Path, per_class: int = 6) -> None:
    """``folder/photos/{cat,dog}/`` (``per_class`` random 20×20 RGB images each, no test split) and
    ``folder/net.py`` whose ``make`` builds a two-conv classifier."""
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (folder / "photos" / label).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / "photos" / label / f"{i}.png")
    (folder / "net.py").write_text(NET)

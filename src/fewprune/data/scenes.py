"""Fashion-MNIST scenes: a small semantic-segmentation task built, deterministically, from Fashion-MNIST.

No segmentation dataset ships with Debian, and nothing may be downloaded, so
fewprune measures segmentation on scenes it composes itself (as M2NIST does
with digits). Each scene is a ``size``×``size`` black canvas on which
``garments`` Fashion-MNIST images are drawn at random places, one over the
other. A garment's pixels brighter than ``INK`` are drawn (the rest is
transparent), and each drawn pixel is labelled with its garment's class + 1;
label 0 is the background. A garment partly hidden by a later one keeps only
its visible pixels, as in a photograph. Training scenes use the training
images, test scenes the test images, each image once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import DatasetInfo, ImageTensorDataset
from .idx import FASHION_MNIST_CLASSES, load_fashion_mnist

INK = 10  # pixels at or below this are Fashion-MNIST's background (faint noise), not garment
SCENES_CLASSES = ("background", *FASHION_MNIST_CLASSES)
# Statistics of the 20,000 default training scenes (checked by a test).
SCENES_MEAN = (0.1378,)
SCENES_STD = (0.2838,)


def compose_scenes(images: np.ndarray, labels: np.ndarray, size: int, garments: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scenes (S×size×size uint8) and their label masks from ``images`` (N×h×w uint8) and class ``labels``.

    The images are taken in a random order, ``garments`` per scene, each
    image once (a remainder of fewer than ``garments`` images is unused).
    """
    n, h, w = images.shape
    if size < max(h, w):
        raise ValueError(f"a scene of {size}×{size} pixels cannot hold a {h}×{w} image")
    count = n // garments
    if count == 0:
        raise ValueError(f"{n} images are too few for one scene of {garments} garments")
    order = rng.permutation(n)[: count * garments].reshape(count, garments)
    top = rng.integers(0, size - h + 1, size=(count, garments))
    left = rng.integers(0, size - w + 1, size=(count, garments))
    canvas = np.zeros((count, size, size), dtype=np.uint8)
    mask = np.zeros((count, size, size), dtype=np.uint8)
    scene = np.arange(count)[:, None, None]
    for k in range(garments):  # later garments are drawn over earlier ones
        rows = top[:, k, None, None] + np.arange(h)[None, :, None]
        cols = left[:, k, None, None] + np.arange(w)[None, None, :]
        patch = images[order[:, k]]
        ink = patch > INK
        canvas[scene, rows, cols] = np.where(ink, patch, canvas[scene, rows, cols])
        mask[scene, rows, cols] = np.where(ink, labels[order[:, k], None, None] + 1, mask[scene, rows, cols])
    return canvas, mask


def load_fashion_mnist_scenes(split: str = "train", root: str | Path | None = None, size: int = 64,
                              garments: int = 3, seed: int = 0) -> ImageTensorDataset:
    """Fashion-MNIST scenes of ``split``: 1×``size``×``size`` images with per-pixel labels (0: background,
    1–10: the garment classes). The same ``seed`` gives the same scenes; the Fashion-MNIST files are found
    as for ``fashion-mnist`` (``root``, ``$FEWPRUNE_FASHION_MNIST``, Debian's folder)."""
    source = load_fashion_mnist(split, root)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    images, masks = compose_scenes(source.images[:, 0].numpy(), source.targets.numpy(), size, garments, rng)
    info = DatasetInfo(
        name="fashion-mnist-scenes",
        classes=SCENES_CLASSES,
        input_shape=(1, size, size),
        mean=SCENES_MEAN,
        std=SCENES_STD,
        split=split,
        source=source.info.source,
        task="segmentation",
        extra={"size": size, "garments": garments, "seed": seed, "ink": INK},
    )
    return ImageTensorDataset(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(masks), info)

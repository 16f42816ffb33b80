"""ImageNet-style folders (``root/[split/]class/image.ext``), decoded lazily."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from .base import DatasetInfo
from .errors import DatasetNotFound

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFolderDataset(Dataset):
    """Wraps torchvision's ImageFolder with the resize/crop/normalise of the eval protocol."""

    def __init__(self, folder, info: DatasetInfo):
        self.folder = folder
        self.info = info
        self.targets = torch.tensor(folder.targets, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int):
        return self.folder[index]


def load_image_folder(path: str | Path, split: str = "train", image_size: int = 224) -> ImageFolderDataset:
    """Images under ``path/split/<class>/`` (or ``path/<class>/`` when there is no split folder)."""
    from torchvision import datasets, transforms

    root = Path(path)
    if (root / split).is_dir():
        root = root / split
    if not root.is_dir():
        raise DatasetNotFound(f"image folder {root} does not exist; expected {path}/[{split}/]<class>/<image>")
    tf = transforms.Compose([
        transforms.Resize(int(round(image_size * 256 / 224))),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    try:
        folder = datasets.ImageFolder(str(root), transform=tf, loader=lambda p: _rgb(p))
    except FileNotFoundError as err:
        raise DatasetNotFound(f"no class folders with images under {root}: {err}") from None
    info = DatasetInfo(
        name=f"imagefolder:{path}", classes=tuple(folder.classes), input_shape=(3, image_size, image_size),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, split=split, source=str(root),
    )
    return ImageFolderDataset(folder, info)


def _rgb(path: str):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")

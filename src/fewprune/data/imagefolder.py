"""ImageNet-style folders (``root/[split/]class/image.ext``), or a flat folder of unlabelled images, decoded lazily."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from .base import DatasetInfo
from .errors import DatasetNotFound

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's


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


class UnlabelledImages(Dataset):
    """The images directly inside a folder, in name order; items are image tensors, with no label."""

    targets = None

    def __init__(self, files: list[Path], transform, info: DatasetInfo):
        self.files, self.transform, self.info = files, transform, info

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        return self.transform(_rgb(self.files[index]))


def load_image_folder(path: str | Path, split: str = "train", image_size: int = 224):
    """Images under ``path/split/<class>/`` (or ``path/<class>/`` when there is no split folder).

    A folder holding images directly and no class folder is a dataset of
    unlabelled images (:class:`UnlabelledImages`; ``info.classes`` is empty).
    """
    from torchvision import datasets, transforms

    root = Path(path)
    split_folder = (root / split).is_dir()
    if split_folder:
        root = root / split
    # without a split folder every split reads the same images: an evaluation must leave the samples out
    extra = {} if split_folder else {"same_images_every_split": True}
    if not root.is_dir():
        raise DatasetNotFound(f"image folder {root} does not exist; expected {path}/[{split}/]<class>/<image> "
                              f"or a folder of images")
    tf = transforms.Compose([
        transforms.Resize(int(round(image_size * 256 / 224))),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    entries = list(root.iterdir())
    images = sorted(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if images and not any(p.is_dir() for p in entries):
        info = DatasetInfo(name=f"imagefolder:{path}", classes=(), input_shape=(3, image_size, image_size),
                           mean=IMAGENET_MEAN, std=IMAGENET_STD, split=split, source=str(root), extra=extra)
        return UnlabelledImages(images, tf, info)
    try:
        folder = datasets.ImageFolder(str(root), transform=tf, loader=lambda p: _rgb(p))
    except FileNotFoundError as err:
        raise DatasetNotFound(f"no class folders with images under {root}: {err}") from None
    info = DatasetInfo(
        name=f"imagefolder:{path}", classes=tuple(folder.classes), input_shape=(3, image_size, image_size),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, split=split, source=str(root), extra=extra,
    )
    return ImageFolderDataset(folder, info)


def _rgb(path: str):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")

"""Image folders, decoded lazily: ImageNet-style (``root/[split/]class/image.ext``), a flat folder of unlabelled
images, or a segmentation set (``root/[split/]images/`` with label masks of the same names in ``masks/``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from .base import DatasetInfo
from .errors import DatasetNotFound

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's


def resized_side(image_size: int) -> int:
    """The shorter side an image is resized to before its centre ``image_size`` crop (ImageNet's 256 → 224)."""
    return int(round(image_size * 256 / 224))


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


class SegmentationFolder(Dataset):
    """Images with a label mask each: ``(image tensor, mask)`` items, the mask ``H×W`` of class indices.

    A mask is an 8-bit single-channel image (``L``, or a palette ``P`` PNG as
    VOC's) whose pixel values are the classes; 255 marks pixels to ignore.
    Image and mask are resized alike (the mask by nearest neighbour, so no
    class is invented at a boundary) and centre-cropped, as classifier images
    are. The masks are read when the set is opened (a bad one is named before
    any work is spent) and kept as ``targets`` (``N×H×W`` uint8); images are
    decoded per item.
    """

    def __init__(self, pairs: list[tuple[Path, Path]], image_size: int, info: DatasetInfo):
        self.pairs, self.image_size, self.info = pairs, image_size, info
        self.targets = torch.stack([self._mask(image, mask) for image, mask in pairs])

    def __len__(self) -> int:
        return len(self.pairs)

    def _fit(self, picture, interpolation):
        from torchvision.transforms import functional as TF

        return TF.center_crop(TF.resize(picture, resized_side(self.image_size), interpolation), self.image_size)

    def _mask(self, image_path: Path, mask_path: Path) -> torch.Tensor:
        import numpy as np
        from PIL import Image
        from torchvision.transforms import InterpolationMode

        with Image.open(image_path) as image, Image.open(mask_path) as mask:  # the image's header only: its size
            if mask.mode not in ("L", "P"):
                raise ValueError(f"mask {mask_path} is a {mask.mode} image; a mask holds one class index per pixel "
                                 "(an 8-bit single-channel or palette image, 255 = ignore), not colours")
            if mask.size != image.size:
                raise ValueError(f"mask {mask_path} is {mask.size[0]}×{mask.size[1]} pixels, its image {image_path} "
                                 f"{image.size[0]}×{image.size[1]}")
            return torch.from_numpy(np.array(self._fit(mask, InterpolationMode.NEAREST), dtype=np.uint8))

    def __getitem__(self, index: int):
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        image = self._fit(_rgb(self.pairs[index][0]), InterpolationMode.BILINEAR)
        return TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD), self.targets[index].long()


def _segmentation_folder(path: str | Path, root: Path, split: str, image_size: int, extra: dict) -> SegmentationFolder:
    """``root/images/*`` paired by name with ``root/masks/*``; class names from a ``classes.txt`` (one a line, in
    label order) in ``root`` or ``path``, else none (the model keeps its own class count)."""
    masks = {p.stem: p for p in (root / "masks").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    images = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise DatasetNotFound(f"{root / 'images'} holds no images")
    unmatched = [p.name for p in images if p.stem not in masks]
    if unmatched:
        raise DatasetNotFound(f"{len(unmatched)} images in {root / 'images'} have no mask of the same name in "
                              f"{root / 'masks'}: {', '.join(unmatched[:5])}{', …' if len(unmatched) > 5 else ''}")
    names = next((f for f in (root / "classes.txt", Path(path) / "classes.txt") if f.is_file()), None)
    classes = tuple(line.strip() for line in names.read_text().splitlines() if line.strip()) if names else ()
    info = DatasetInfo(name=f"imagefolder:{path}", classes=classes, input_shape=(3, image_size, image_size),
                       mean=IMAGENET_MEAN, std=IMAGENET_STD, split=split, source=str(root), task="segmentation",
                       extra=extra)
    return SegmentationFolder([(p, masks[p.stem]) for p in images], image_size, info)


def load_image_folder(path: str | Path, split: str = "train", image_size: int = 224):
    """Images under ``path/split/<class>/`` (or ``path/<class>/`` when there is no split folder).

    A folder holding images directly and no class folder is a dataset of
    unlabelled images (:class:`UnlabelledImages`; ``info.classes`` is empty).
    A folder with ``images/`` and ``masks/`` is a segmentation set
    (:class:`SegmentationFolder`).
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
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return _segmentation_folder(path, root, split, image_size, extra)
    tf = transforms.Compose([
        transforms.Resize(resized_side(image_size)),
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

"""Image folders, decoded lazily: ImageNet-style (``root/[split/]class/image.ext``), a flat folder of unlabelled
images, or a segmentation set (``root/[split/]images/`` with label masks of the same names in ``masks/``).

How a file becomes the tensor a model reads is the model's *input convention*
(:func:`input_convention`): its size, channels (RGB or grey), normalisation and
resizing. It defaults to ImageNet's (224, RGB, ImageNet mean/std, resize to
256 and crop 224); a model trained otherwise — a Fashion-MNIST teacher reads
28×28 grey images — needs its own, or its accuracy on the folder is meaningless.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from .base import DatasetInfo
from .errors import DatasetNotFound

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
RESIZE_MODES = ("imagenet", "fit")  # or a number: the crop's share of the shorter side (timm's crop_pct)
INTERPOLATIONS = ("bilinear", "bicubic")


def resized_side(image_size: int, resize: str | float = "imagenet") -> int:
    """The shorter side an image is resized to before its centre ``image_size`` crop: ImageNet's 256 → 224 (the
    crop keeps the central 87.5%); with ``resize="fit"``, the crop size itself (the whole shorter side); with a
    number, ``image_size / resize`` rounded down as timm does (0.9: 224 → 248)."""
    if resize == "imagenet":
        return int(round(image_size * 256 / 224))
    if resize == "fit":
        return image_size
    return int(image_size / float(resize) + 1e-6)  # (+1e-6: 224 / (224/232) is 231.99… in floats)


def input_convention(image_size: int = 224, channels: int = 3, mean=None, std=None, resize: str | float = "imagenet",
                     interpolation: str = "bilinear") -> dict:
    """The checked keyword arguments of :func:`load_image_folder`: how its files become a model's input.

    ``channels`` 3 reads RGB, 1 greyscale; ``mean``/``std`` (one value, or one
    per channel) default to ImageNet's (for grey: their averages). ``resize``
    ``"imagenet"`` scales the shorter side to ``image_size``·256/224 and crops
    the centre (ImageNet's evaluation); ``"fit"`` scales it to ``image_size``
    (an image of that size is kept as it is); a number in (0, 1] is the
    crop's share of the shorter side (timm's ``crop_pct``: 0.9 crops 224 of
    248). ``interpolation`` is the resizing filter: bilinear or bicubic.
    """
    if channels not in (1, 3):
        raise ValueError(f"an image folder's images are read with 1 (grey) or 3 (RGB) channels, not {channels}")
    if resize not in RESIZE_MODES and not (isinstance(resize, int | float) and 0 < resize <= 1):
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)} or the crop's share of the shorter side "
                         f"(a number in (0, 1]), not {resize!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {interpolation!r}")
    if int(image_size) < 1:
        raise ValueError(f"image size must be at least 1 pixel, not {image_size}")
    grey = (round(sum(IMAGENET_MEAN) / 3, 3),), (round(sum(IMAGENET_STD) / 3, 3),)
    default_mean, default_std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else grey

    def per_channel(values, default, what: str) -> tuple[float, ...]:
        values = default if values is None else tuple(float(v) for v in (
            values if isinstance(values, list | tuple) else [values]))
        if len(values) == 1:
            values *= channels
        if len(values) != channels:
            raise ValueError(f"{what} has {len(values)} values for images of {channels} channels: give one, or one "
                             "per channel")
        if what == "std" and min(values) <= 0:
            raise ValueError(f"std must be positive, got {values}")
        return values

    return {"image_size": int(image_size), "channels": channels, "mean": per_channel(mean, default_mean, "mean"),
            "std": per_channel(std, default_std, "std"), "resize": resize, "interpolation": interpolation}


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
        return self.transform(self.files[index])


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

    def __init__(self, pairs: list[tuple[Path, Path]], convention: dict, info: DatasetInfo):
        self.pairs, self.convention, self.info = pairs, convention, info
        self.image_size = convention["image_size"]
        self.targets = torch.stack([self._mask(image, mask) for image, mask in pairs])

    def __len__(self) -> int:
        return len(self.pairs)

    def _fit(self, picture, interpolation):
        from torchvision.transforms import functional as TF

        side = resized_side(self.image_size, self.convention["resize"])
        return TF.center_crop(TF.resize(picture, side, interpolation), self.image_size)

    def _filter(self):
        from torchvision.transforms import InterpolationMode

        return InterpolationMode(self.convention["interpolation"])

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
        from torchvision.transforms import functional as TF

        image = self._fit(_open(self.pairs[index][0], self.convention["channels"]), self._filter())
        return (TF.normalize(TF.to_tensor(image), self.convention["mean"], self.convention["std"]),
                self.targets[index].long())


def _segmentation_folder(path: str | Path, root: Path, split: str, convention: dict, extra: dict,
                         classes: tuple[str, ...]) -> SegmentationFolder:
    """``root/images/*`` paired by name with ``root/masks/*`` (a mask's pixel values are class indices); ``classes``
    names them, if known (else the model keeps its own class count)."""
    masks = {p.stem: p for p in (root / "masks").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    images = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise DatasetNotFound(f"{root / 'images'} holds no images")
    unmatched = [p.name for p in images if p.stem not in masks]
    if unmatched:
        raise DatasetNotFound(f"{len(unmatched)} images in {root / 'images'} have no mask of the same name in "
                              f"{root / 'masks'}: {', '.join(unmatched[:5])}{', …' if len(unmatched) > 5 else ''}")
    info = _info(path, classes, convention, split, root, extra, task="segmentation")
    return SegmentationFolder([(p, masks[p.stem]) for p in images], convention, info)


def load_image_folder(path: str | Path, split: str = "train", image_size: int = 224, channels: int = 3,
                      mean=None, std=None, resize: str | float = "imagenet", interpolation: str = "bilinear",
                      classes=None):
    """Images under ``path/split/<class>/`` (or ``path/<class>/`` when there is no split folder).

    A folder holding images directly and no class folder is a dataset of
    unlabelled images (:class:`UnlabelledImages`; ``info.classes`` is empty).
    A folder with ``images/`` and ``masks/`` is a segmentation set
    (:class:`SegmentationFolder`). ``image_size``, ``channels``, ``mean``,
    ``std``, ``resize`` and ``interpolation`` are the model's input convention
    (:func:`input_convention`, which checks them).

    ``classes`` are the model's class names in the order of its outputs (else
    a ``classes.txt`` in the folder, one a line). Class folders are matched to
    them by name (case and punctuation aside: ``t-shirt_top`` is
    ``T-shirt/top``) or by index (``0``, ``1``, …), so a label is the model's
    output index. Without them, labels follow the folders' sorted names
    (ImageNet's synset folders give ImageNet's order).
    """
    from torchvision import datasets, transforms
    from torchvision.transforms import InterpolationMode

    convention = input_convention(image_size, channels, mean, std, resize, interpolation)
    root = Path(path)
    split_folder = (root / split).is_dir()
    if split_folder:
        root = root / split
    # without a split folder every split reads the same images: an evaluation must leave the samples out
    extra = {"resize": resize, "interpolation": interpolation, **({} if split_folder else {"same_images_every_split": True})}
    if not root.is_dir():
        raise DatasetNotFound(f"image folder {root} does not exist; expected {path}/[{split}/]<class>/<image> "
                              f"or a folder of images")
    classes = tuple(classes) if classes else _classes_file(path, root)
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return _segmentation_folder(path, root, split, convention, extra, classes)
    tf = transforms.Compose([
        lambda file: _open(file, convention["channels"]),
        transforms.Resize(resized_side(convention["image_size"], resize), InterpolationMode(interpolation)),
        transforms.CenterCrop(convention["image_size"]),
        transforms.ToTensor(),
        transforms.Normalize(convention["mean"], convention["std"]),
    ])
    entries = list(root.iterdir())
    images = sorted(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if images and not any(p.is_dir() for p in entries):
        return UnlabelledImages(images, tf, _info(path, (), convention, split, root, extra))
    try:
        folder = datasets.ImageFolder(str(root), transform=tf, loader=lambda file: file)  # tf opens the file
    except FileNotFoundError as err:
        raise DatasetNotFound(f"no class folders with images under {root}: {err}") from None
    if classes:
        _label_by_model_class(folder, classes, root)
    return ImageFolderDataset(folder, _info(path, classes or tuple(folder.classes), convention, split, root, extra))


def _classes_file(path, root: Path) -> tuple[str, ...]:
    """The class names of a ``classes.txt`` (one a line, in label order) in ``root`` or ``path``; () if none."""
    names = next((f for f in (root / "classes.txt", Path(path) / "classes.txt") if f.is_file()), None)
    return tuple(line.strip() for line in names.read_text().splitlines() if line.strip()) if names else ()


def _label_by_model_class(folder, classes: tuple[str, ...], root: Path) -> None:
    """Relabel an ImageFolder's items with the model's class index of each class folder (by name or index)."""
    import re

    def key(name: str) -> str:
        return re.sub(r"[^0-9a-z]", "", name.lower())

    by_key = {key(name): index for index, name in enumerate(classes)}
    index_of, unknown = {}, []
    for name in folder.classes:
        if name.isdigit() and int(name) < len(classes):
            index_of[name] = int(name)
        elif key(name) in by_key:
            index_of[name] = by_key[key(name)]
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"class folders {', '.join(map(repr, unknown))} under {root} are none of the model's "
                         f"{len(classes)} classes ({', '.join(classes)}): name each folder after its class or its "
                         "index (0, 1, …)")
    clashes = {n for n in index_of if list(index_of.values()).count(index_of[n]) > 1}
    if clashes:
        raise ValueError(f"class folders {', '.join(sorted(clashes))} under {root} name the same class")
    old_to_new = [index_of[name] for name in folder.classes]
    folder.samples = [(file, old_to_new[label]) for file, label in folder.samples]
    folder.imgs = folder.samples
    folder.targets = [label for _, label in folder.samples]
    folder.classes, folder.class_to_idx = list(classes), {name: i for i, name in enumerate(classes)}


def _info(path, classes: tuple, convention: dict, split: str, root: Path, extra: dict, **more) -> DatasetInfo:
    size = convention["image_size"]
    return DatasetInfo(name=f"imagefolder:{path}", classes=classes, input_shape=(convention["channels"], size, size),
                       mean=convention["mean"], std=convention["std"], split=split, source=str(root), extra=extra,
                       **more)


def _open(path, channels: int):
    """The image file decoded as RGB, or as grey (PIL's ``L``: ITU-R 601 luma) for a 1-channel model. A 16-bit
    grey image is scaled to 8 bits first (PIL's own conversion clips everything above 255 to white)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        if img.mode.startswith("I;16"):
            img = Image.fromarray(np.round(np.asarray(img, dtype=np.float32) / 257).astype(np.uint8))
        return img.convert("RGB" if channels == 3 else "L")

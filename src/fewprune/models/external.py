"""Models that come from outside fewprune: torchvision or timm by name, or a user's ``file.py:factory``."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..registry import did_you_mean


def torchvision_model(name: str, num_classes: int | None = None) -> nn.Module:
    """An untrained torchvision classification or segmentation model (weights come only from the user's files).

    A segmentation model (``fcn_resnet50``, ``deeplabv3_*``, ``lraspp_*``) is built without its training-only
    auxiliary head and without a pretrained backbone, which torchvision would otherwise download.
    ``num_classes=None`` keeps torchvision's own count (1000 classes; 21 for segmentation).
    """
    from torchvision import models as tvm

    classifiers, segmenters = tvm.list_models(module=tvm), tvm.list_models(module=tvm.segmentation)
    if name in segmenters:
        return tvm.get_model(name, weights=None, weights_backbone=None, num_classes=num_classes or 21, aux_loss=False)
    if name not in classifiers:
        raise KeyError(f"torchvision has no classification or segmentation model {name!r}"
                       f"{did_you_mean(name, classifiers + segmenters)}; "
                       f"e.g. {', '.join(classifiers[:8])}, …, {', '.join(segmenters[:3])}, …")
    kwargs = {"weights": None, "num_classes": num_classes or 1000}
    if name.startswith(("inception", "googlenet")):
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = True
    return tvm.get_model(name, **kwargs)


def timm_model(name: str, num_classes: int | None = None, in_channels: int = 3) -> nn.Module:
    """An untrained timm model (``pip install 'fewprune[timm]'``); nothing is downloaded, weights come from files."""
    try:
        import timm
    except ImportError:
        raise ImportError("timm:NAME models need timm: pip install 'fewprune[timm]'") from None
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise KeyError(f"timm has no model {name!r}" + (f"; e.g. {', '.join(close)}" if close else ""))
    options = {"in_chans": in_channels, **({"num_classes": num_classes} if num_classes else {})}
    return timm.create_model(name, pretrained=False, **options)


def torchvision_input_convention(name: str) -> dict | None:
    """How torchvision evaluates ``name``'s first ImageNet weights (crop size, resize, mean/std, filter), as
    :func:`fewprune.data.input_convention` takes it; read offline from its weights' metadata. None for a model
    without classification weights (a segmentation model keeps ImageNet's convention)."""
    from torchvision import models as tvm

    try:
        weights = list(tvm.get_model_weights(name))
    except (KeyError, ValueError):
        return None
    preset = weights[0].transforms() if weights else None
    if not getattr(preset, "crop_size", None) or not getattr(preset, "resize_size", None):
        return None  # not a classifier's resize-then-crop (a segmentation preset resizes only)
    crop, side = preset.crop_size[0], preset.resize_size[0]
    filter_name = preset.interpolation.value
    return {"image_size": crop, "channels": 3, "mean": tuple(preset.mean), "std": tuple(preset.std),
            "resize": "imagenet" if (crop, side) == (224, 256) else crop / side,
            "interpolation": filter_name if filter_name in ("bilinear", "bicubic") else "bilinear"}


def timm_input_convention(name: str) -> dict | None:
    """How timm evaluates ``name`` (its pretrained config: input size, mean/std, crop_pct, filter), as
    :func:`fewprune.data.input_convention` takes it; offline. None when timm has no config for it."""
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name)
    except (ImportError, RuntimeError):  # no timm, or a tag timm does not know (building the model says so)
        return None
    if cfg is None or not cfg.input_size:
        return None
    channels, size, _ = cfg.input_size
    crop_pct = cfg.crop_pct or 1.0
    return {"image_size": size, "channels": channels, "mean": tuple(cfg.mean), "std": tuple(cfg.std),
            "resize": "imagenet" if abs(crop_pct - 0.875) < 1e-9 else crop_pct,
            "interpolation": cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic") else "bicubic"}


@contextmanager
def _importable_beside(path: Path):
    """The file's folder first on ``sys.path`` meanwhile, as when the file runs as a script: it may import the
    modules beside it (its model's code)."""
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)  # this entry: the one inserted (an equal one already there stays)


def _import_file(spec: str):
    """The module of ``path/to/file.py[:factory]``, imported from its file, its path and the factory's name."""
    path_text, _, factory_name = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist (expected path/to/file.py:factory)")
    module_spec = importlib.util.spec_from_file_location(f"fewprune_user_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    with _importable_beside(path):
        module_spec.loader.exec_module(module)
    return module, path, factory_name


def file_model(spec: str, **kwargs) -> nn.Module:
    """Import ``path/to/file.py`` and call its ``factory``; only the keyword arguments it accepts are passed."""
    if ".py:" not in spec:
        raise ValueError(f"{spec}: name the function that builds the model, as path/to/file.py:factory")
    module, path, factory_name = _import_file(spec)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise AttributeError(f"{path} has no callable {factory_name!r}")
    accepted = inspect.signature(factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    with _importable_beside(path):  # a factory may import its model's code when called
        model = factory(**{k: v for k, v in kwargs.items() if takes_any or k in accepted})
    if not isinstance(model, nn.Module):
        raise TypeError(f"{spec} returned {type(model).__name__}, not an nn.Module")
    return model


def file_input_convention(spec: str) -> dict | None:
    """How the model of ``path/to/file.py:factory`` reads images, if its file says: a module-level
    ``INPUT_CONVENTION`` dict of :func:`fewprune.data.input_convention`'s keywords (checked), e.g.
    ``{"image_size": 28, "channels": 1, "mean": 0.286, "std": 0.353, "resize": "fit"}``; None if it has none."""
    from ..data import input_convention

    module, path, _ = _import_file(spec)
    declared = getattr(module, "INPUT_CONVENTION", None)
    if declared is None:
        return None
    where = f"{path}: INPUT_CONVENTION"
    if not isinstance(declared, dict):
        raise TypeError(f"{where} must be a dict of input-convention settings, not {type(declared).__name__}")
    unknown = sorted(set(declared) - set(inspect.signature(input_convention).parameters))
    if unknown:
        raise ValueError(f"{where} has unknown settings {unknown}; it takes "
                         f"{', '.join(inspect.signature(input_convention).parameters)}")
    try:
        input_convention(**declared)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return dict(declared)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def adapt_io(model: nn.Module, in_channels: int | None = None, num_classes: int | None = None) -> nn.Module:
    """Change the first conv's input channels and/or the last linear's outputs, in place.

    A new first conv keeps the old filters averaged over input channels (so a
    pretrained RGB stem still sees grey images sensibly); a new head is freshly
    initialised.
    """
    named = list(model.named_modules())
    if in_channels is not None:
        first = next(((n, m) for n, m in named if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ValueError(f"{type(model).__name__} has no Conv2d whose input channels could be adapted")
        name, conv = first
        if conv.in_channels != in_channels:
            if conv.groups != 1:
                raise ValueError(f"first conv {name} is grouped; cannot adapt its input channels")
            new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            conv.dilation, 1, conv.bias is not None, conv.padding_mode)
            with torch.no_grad():
                new.weight.copy_(conv.weight.mean(1, keepdim=True).expand_as(new.weight) * conv.in_channels / in_channels)
                if conv.bias is not None:
                    new.bias.copy_(conv.bias)
            _replace(model, name, new)
    if num_classes is not None:
        last = next(((n, m) for n, m in reversed(named) if isinstance(m, nn.Linear)), None)
        if last is None:
            raise ValueError(f"{type(model).__name__} has no Linear head whose outputs could be adapted")
        name, head = last
        if head.out_features != num_classes:
            _replace(model, name, nn.Linear(head.in_features, num_classes, bias=head.bias is not None))
    return model

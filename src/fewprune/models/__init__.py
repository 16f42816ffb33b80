"""Architectures by name: built-ins, ``torchvision:NAME`` and ``path/to/file.py:factory``."""

from __future__ import annotations

from torch import nn

from . import zoo
from .builtin import models, register_model
from .external import adapt_io, file_model, timm_model, torchvision_model
from .features import capture, feature_layer
from .weights import load_weights, read_state_dict


def build(spec: str, num_classes: int | None = 10, in_channels: int = 3, image_size: int = 32,
          weights: str | None = None, allow_pickle: bool = False, adapt: bool = False) -> nn.Module:
    """Build a model from a spec string, optionally load ``weights`` and adapt its input/output layers.

    ``spec`` is a registered name (``resnet56``), ``torchvision:NAME``, ``timm:NAME``, ``zoo:NAME``
    (a shipped teacher, weights included) or ``path/to/file.py:factory``. With
    ``adapt``, the first conv and the head are changed to ``in_channels`` /
    ``num_classes`` after the weights are loaded (fine-tuning a pretrained model
    onto another dataset). ``num_classes=None`` keeps the architecture's own
    class count (data without labels says nothing of it).
    """
    if spec.startswith("zoo:"):
        return zoo.load(spec[4:])
    # With ``adapt`` the architecture is built as the weights expect (its own defaults), then changed.
    io = {} if adapt else {"in_channels": in_channels, **({"num_classes": num_classes} if num_classes else {})}
    if spec.startswith("torchvision:"):
        model = torchvision_model(spec.split(":", 1)[1], num_classes=io.get("num_classes"))
        if io.get("in_channels", 3) != 3:
            adapt_io(model, in_channels=in_channels)
    elif spec.startswith("timm:"):
        model = timm_model(spec.split(":", 1)[1], io.get("num_classes"), io.get("in_channels", 3))
    elif spec.endswith(".py") or ".py:" in spec:
        model = file_model(spec, image_size=image_size, **io)
    else:
        model = models.get(spec)(image_size=image_size, **io)
    if weights is not None:
        load_weights(model, weights, allow_pickle)
    if adapt:
        adapt_io(model, in_channels=in_channels, num_classes=num_classes)
    return model


__all__ = [
    "adapt_io", "build", "capture", "feature_layer", "load_weights", "models", "read_state_dict", "register_model", "zoo",
]

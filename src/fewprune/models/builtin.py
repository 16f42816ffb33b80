"""The built-in architectures, registered by name."""

from __future__ import annotations

from ..registry import Registry
from .mobilenetv2 import CifarMobileNetV2
from .resnet_cifar import CifarResNet
from .vgg import CifarVGG
from .vit import SmallViT

models: Registry = Registry("model")
register_model = models.register


@register_model("resnet20")
def resnet20(num_classes: int = 10, in_channels: int = 3, image_size: int = 32):
    return CifarResNet(20, num_classes, in_channels)


@register_model("resnet56")
def resnet56(num_classes: int = 10, in_channels: int = 3, image_size: int = 32):
    return CifarResNet(56, num_classes, in_channels)


@register_model("vgg16")
def vgg16(num_classes: int = 10, in_channels: int = 3, image_size: int = 32):
    return CifarVGG(num_classes, in_channels)


@register_model("mobilenetv2")
def mobilenetv2(num_classes: int = 10, in_channels: int = 3, image_size: int = 32):
    return CifarMobileNetV2(num_classes, in_channels)


@register_model("vit")
def vit(num_classes: int = 10, in_channels: int = 3, image_size: int = 32):
    # Patch 4 tiles both 28×28 (7×7 tokens) and 32×32 (8×8 tokens).
    return SmallViT(num_classes, in_channels, image_size, patch_size=4, dim=128, depth=6, num_heads=4)

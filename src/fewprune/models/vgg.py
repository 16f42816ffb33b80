"""CIFAR-style VGG-16 with batch norm: 13 conv layers, global pooling, one linear head."""

from __future__ import annotations

import torch
from torch import nn

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class CifarVGG(nn.Module):
    """VGG-16-BN for small images. Pools use ``ceil_mode`` so 28×28 inputs survive five halvings."""

    feature_layer = "features"

    def __init__(self, num_classes: int = 10, in_channels: int = 3, config=VGG16):
        super().__init__()
        layers: list[nn.Module] = []
        current = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(current, item, 3, 1, 1, bias=False), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                current = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(current, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

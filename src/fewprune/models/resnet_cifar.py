"""CIFAR-style ResNets (He et al. 2016, §4.2): three stages of 16/32/64 channels.

Shortcuts that change shape use a 1×1 conv + BN (option B), so every coupling
is an ordinary layer the dependency graph understands.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Add


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.add = Add()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(self.add(out, self.shortcut(x)))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images; ``depth`` 20 → n = 3, 56 → n = 9."""

    feature_layer = "layer3"  # pre-global-pooling features, for feature mimicking

    def __init__(self, depth: int = 56, num_classes: int = 10, in_channels: int = 3, width: int = 16):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        widths = [width, 2 * width, 4 * width]
        layers, current = [], width
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(current, w, stride=2 if (i > 0 and j == 0) else 1))
                current = w
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(current, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))

"""CIFAR-style MobileNetV2 (Sandler et al. 2018): stride 1 in the stem and the first stages."""

from __future__ import annotations

import torch
from torch import nn

from .layers import Add

# (expansion, out channels, repeats, first stride) — the usual small-image variant.
CIFAR_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_relu(cin, hidden, 1))
        layers += [
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return self.add(x, out) if self.use_res_connect else out


class CifarMobileNetV2(nn.Module):
    feature_layer = "features"

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, last_channels: int = 1280):
        super().__init__()
        current = int(32 * width_mult)
        layers: list[nn.Module] = [conv_bn_relu(in_channels, current, 3, 1)]
        for t, c, n, s in CIFAR_SETTINGS:
            out = int(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(current, out, s if i == 0 else 1, t))
                current = out
        layers.append(conv_bn_relu(current, last_channels, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channels, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

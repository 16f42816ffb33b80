"""Small layers the built-in models share."""

from __future__ import annotations

import torch
from torch import nn


class Add(nn.Module):
    """A residual addition ``a + b`` as a module.

    Functionally a plain ``+``; being a module lets explainers find every
    residual join and re-route it (LRP splits relevance there in proportion
    to the two inputs instead of copying it to both).
    """

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

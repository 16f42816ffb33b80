"""Temporary eval mode that restores every submodule's own mode (mixed modes included)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Run the block with ``models`` in eval mode, then give every submodule back its own mode.

    ``model.train(was_training)`` would not do: it sets one mode everywhere,
    and a model with, say, frozen BN layers inside a training model would come
    back changed.
    """
    saved = [(module, module.training) for model in models for module in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, mode in saved:
            module.training = mode

"""Temporary model states restored exactly afterwards: eval mode (mixed modes included), frozen parameters."""

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


@contextmanager
def frozen_parameters(model: nn.Module, modules: list[str] | None = None):
    """Temporarily stop the named modules' own parameters (all of ``model``'s by default) requiring grad."""
    params = list(model.parameters()) if modules is None else \
        [p for name in modules for p in model.get_submodule(name).parameters(recurse=False)]
    flags = [(p, p.requires_grad) for p in params]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)

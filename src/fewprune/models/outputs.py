"""What a model's forward returns, reduced to the scores fewprune reads.

A classifier returns a tensor of class scores (batch × classes). torchvision's
segmentation models return a dict whose ``"out"`` holds per-pixel class scores
(batch × classes × H × W), beside an ``"aux"`` head used only in training;
other models return a tuple whose first item is the prediction. Everything
that reads a model's predictions (distillation, accuracy, agreement, the
pruned == masked check) reads :func:`main_output`, so it works on all three.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..structure.graph import UnsupportedModel


def main_output(output) -> torch.Tensor:
    """The prediction tensor of a forward's ``output``: itself, a dict's ``"out"`` (else its first value), or a
    tuple's or list's first item."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and output:
        return main_output(output["out"] if "out" in output else next(iter(output.values())))
    if isinstance(output, tuple | list) and output:
        return main_output(output[0])
    raise TypeError(f"a model output of type {type(output).__name__} holds no prediction tensor")


def all_outputs(output) -> list[torch.Tensor]:
    """Every tensor of a forward's ``output`` (a tensor, or nested dicts, tuples and lists of them), in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for value in output.values() for t in all_outputs(value)]
    if isinstance(output, tuple | list):
        return [t for value in output for t in all_outputs(value)]
    return []


def class_scores(output, method: str) -> torch.Tensor:
    """The per-image class scores (batch × classes) of ``output``, for a method that explains or tests one class
    score per image; a dense prediction (per pixel) is refused with the reason."""
    scores = main_output(output)
    if scores.ndim != 2:
        raise UnsupportedModel(f"{method} reads one class score per image, and this model predicts "
                               f"{tuple(scores.shape)[1:]} per image (a dense prediction, e.g. segmentation): "
                               f"use a criterion that needs no class score (l1, taylor, mir's feature recovery)")
    return scores

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
from torch import nn

from ..modes import eval_mode
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


def identical(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    """Whether two lists of output tensors (from :func:`all_outputs`) are equal, bit for bit."""
    return len(first) == len(second) and all(torch.equal(a, b) for a, b in zip(first, second, strict=False))


def class_scores(output, method: str) -> torch.Tensor:
    """The per-image class scores (batch × classes) of ``output``, for a method that explains or tests one class
    score per image; a dense prediction (per pixel) is refused with the reason."""
    scores = main_output(output)
    if scores.ndim != 2:
        raise UnsupportedModel(f"{method} reads one class score per image, and this model predicts "
                               f"{tuple(scores.shape)[1:]} per image (a dense prediction, e.g. segmentation): "
                               f"use a criterion that needs no class score (l1, taylor, mir's feature recovery)")
    return scores


def check_samples(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
                  who: str = "the teacher", what: str = "the samples") -> None:
    """Refuse samples ``model`` cannot use, saying why, from one forward of one image (eval mode, no gradients):
    images it does not run on (3-channel images for a 1-channel net), and labels that do not fit what it
    predicts: one class index per image for class scores, a mask of the prediction's size for a dense one.
    ``who`` and ``what`` name the model and the images in the message."""
    try:
        with eval_mode(model), torch.no_grad():
            scores = main_output(model(images[:1]))
    except RuntimeError as err:
        raise ValueError(f"{who} does not run on {what} (images of shape {tuple(images.shape[1:])}): {err}") from err
    if labels is None:
        return
    wanted = tuple(scores.shape[2:])  # () for class scores per image, (H, W) per pixel
    if tuple(labels.shape[1:]) != wanted or len(labels) != len(images):
        what = "one class per image" if not wanted else f"a {'×'.join(map(str, wanted))} label mask per image"
        raise ValueError(f"{len(labels)} labels of shape {tuple(labels.shape[1:])} for {len(images)} images, and "
                         f"the model predicts {tuple(scores.shape[1:])} per image: give {what}, or no labels")
    classes = scores.shape[1]
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be class indices (integers), not {labels.dtype}")
    # (a dense label outside the class range, such as 255, marks a pixel to ignore)
    if not wanted and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels must be class indices in [0, {classes}) for this model's {classes} class scores; "
                         f"got {int(labels.min())}…{int(labels.max())}")

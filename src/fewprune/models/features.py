"""Where a model's pre-global-pooling features are, and a hook to read them.

A model may declare it with a ``feature_layer`` attribute (the built-ins do);
otherwise a name table covers torchvision's families (for its segmentation
models: the backbone output their decoder reads), and a traced forward finds
the last module whose output still has spatial or token dimensions.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch
from torch import nn

from ..modes import eval_mode

# torchvision family (class name) -> module whose output is the pre-pooling map
_TORCHVISION_FEATURES = {
    "ResNet": "layer4", "MobileNetV2": "features", "MobileNetV3": "features", "VGG": "features",
    "DenseNet": "features", "EfficientNet": "features", "ConvNeXt": "features", "MNASNet": "layers",
    "RegNet": "trunk_output", "ShuffleNetV2": "conv5", "SqueezeNet": "features", "AlexNet": "features",
    "VisionTransformer": "encoder", "SwinTransformer": "norm", "MaxVit": "blocks", "GoogLeNet": "inception5b",
    "Inception3": "Mixed_7c",
}


def feature_layer(model: nn.Module, example_input: torch.Tensor | None = None) -> str:
    """Name of the module whose output is the model's pre-global-pooling feature map."""
    declared = getattr(model, "feature_layer", None)
    if isinstance(declared, str):
        return declared
    name = _TORCHVISION_FEATURES.get(type(model).__name__) or _backbone_output(model)
    if name is not None and name in dict(model.named_modules()):
        return name
    if example_input is None:
        raise ValueError(
            f"cannot tell where {type(model).__name__}'s pre-pooling features are without an example input; "
            "set a `feature_layer` attribute on the model naming that module"
        )
    return _trace_feature_layer(model, example_input)


def _backbone_output(model: nn.Module) -> str | None:
    """torchvision's segmentation models: the backbone layer whose output the decoder head reads as its main
    input (``"out"``, or LR-ASPP's ``"high"``); None for any other model."""
    layers = getattr(getattr(model, "backbone", None), "return_layers", None)
    if not isinstance(layers, dict):
        return None
    for role in ("out", "high"):
        for child, named in layers.items():
            if named == role:
                return f"backbone.{child}"
    return None


def record_forward(model: nn.Module, example_input: torch.Tensor, names) -> list[tuple[str, tuple, object]]:
    """``(name, inputs, output)`` of each named module, in the order they finish, for one forward of one example.

    The forward runs in eval mode without gradients (so BN statistics do not move);
    the model's mode and hooks are restored. The recorded tensors stay alive, so
    ``is`` comparisons between one module's output and another's input hold.
    """
    calls: list[tuple[str, tuple, object]] = []
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: calls.append((n, i, o))) for n in names]
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input[:1])
    finally:
        for h in hooks:
            h.remove()
    return calls


def _trace_feature_layer(model: nn.Module, example_input: torch.Tensor) -> str:
    finished = [(n, tuple(out.shape)) for n, _, out in record_forward(model, example_input, [n for n, _ in
                                                                                           model.named_modules() if n])
                if isinstance(out, torch.Tensor)]
    # Outer modules finish after their children, so the last match is the outermost one.
    for name, shape in reversed(finished):
        if len(shape) == 4 and shape[2] * shape[3] > 1 or len(shape) == 3:
            return name
    raise ValueError(f"no module of {type(model).__name__} outputs a spatial or token feature map")


@contextmanager
def capture(model: nn.Module, *names: str):
    """Record the outputs of the named modules during forwards: ``with capture(m, "layer3") as out: m(x)``.

    Yields a dict filled on each forward; the hooks are removed on exit.
    """
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"{type(model).__name__} has no module named {missing}")
    outputs: dict[str, torch.Tensor] = {}
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, o)) for n in names]
    try:
        yield outputs
    finally:
        for h in hooks:
            h.remove()


def outputs_of(model: nn.Module, *names: str):
    """``run(x)`` → ``{name: output}`` of the named modules on ``x``; hooks are in place only during the call."""
    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        with capture(model, *names) as out:
            model(x)
        return dict(out)

    return run


def modules_after(model: nn.Module, layer: str, example_input: torch.Tensor) -> list[str]:
    """Names of the parameterised modules that run after ``layer`` finishes (the model's head)."""
    watched = [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False)) or n == layer]
    order = [n for n, _, _ in record_forward(model, example_input, watched)]
    if layer not in order:
        raise ValueError(f"feature layer {layer!r} did not run in the forward pass")
    after = order[order.index(layer) + 1 :]
    return [n for n in after if not n.startswith(layer + ".")]


def head_inputs(model: nn.Module, layer: str, example_input: torch.Tensor) -> list[str]:
    """Modules besides ``layer`` whose outputs the head after it reads directly: a decoder's skip connections
    (LR-ASPP reads low-level features beside the backbone output). Empty for a classifier, whose head reads
    only what ``layer`` leads to.

    A module counts if it finished before ``layer`` did and a head module
    (:func:`modules_after`) takes its output tensor as an input.
    """
    head = set(modules_after(model, layer, example_input))
    calls = record_forward(model, example_input, [n for n, _ in model.named_modules() if n])
    finished = [name for name, _, _ in calls]
    before = set(finished[: finished.index(layer)])
    made_by: dict[int, str] = {}
    for name, _, out in calls:  # an outer module finishes after its children: the outermost name is kept
        if name in before and isinstance(out, torch.Tensor) and not name.startswith(layer + "."):
            made_by[id(out)] = name
    read = [made_by[id(t)] for name, inputs, _ in calls if name in head
            for t in inputs if isinstance(t, torch.Tensor) and id(t) in made_by]
    return sorted(set(read), key=finished.index)


class _Captured(Exception):
    """Ends a forward of :func:`module_io` once its hooked module has run: nothing after it is needed."""


def module_io(model: nn.Module, names: list[str], images: torch.Tensor, batch_size: int = 64):
    """Yield ``(module name, input, output)`` per mini-batch, one module hooked at a time (bounded memory).

    The forwards run in eval mode without gradients; the tensors are detached, the hooks removed and the
    model's modes restored afterwards. A module that runs once per forward ends the forward there (what comes
    after it is not needed: about half the cost, front to back); one that runs more often (shared weights)
    yields its last call of a whole forward.
    """
    runs = Counter(name for name, _, _ in record_forward(model, images[:1], names))
    with eval_mode(model):
        for name in names:
            seen = {}

            def keep(module, inputs, output, seen=seen, stop=runs[name] == 1):
                seen.update(x=inputs[0].detach(), y=output.detach())
                if stop:
                    raise _Captured

            handle = model.get_submodule(name).register_forward_hook(keep)
            try:
                with torch.no_grad():
                    for start in range(0, len(images), batch_size):
                        try:
                            model(images[start : start + batch_size])
                        except _Captured:
                            pass
                        yield name, seen["x"], seen["y"]
            finally:
                handle.remove()


def output_channel_dim(layer: nn.Module) -> int:
    """Where ``layer``'s output keeps its channels: dim 1 for a convolution, the last dim for a linear layer — also
    on a 4-D channels-last map, as in ConvNeXt's and Swin's MLPs."""
    return 1 if isinstance(layer, nn.modules.conv._ConvNd) else -1


def _channel_dim(features: torch.Tensor, dim: int | None) -> int:
    return (dim if dim is not None else 1 if features.ndim == 4 else -1) % features.ndim


def select_channels(features: torch.Tensor, channels: torch.Tensor | None, dim: int | None = None) -> torch.Tensor:
    """``features`` on ``channels`` only (None: all), along ``dim`` (:func:`output_channel_dim` of the layer that
    made them; by default dim 1 of a feature map, the last dim of tokens)."""
    if channels is None:
        return features
    return features.index_select(_channel_dim(features, dim), channels)


def channel_rows(features: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """A layer output as (samples · positions) × channels, its channels along ``dim`` (as :func:`select_channels`)."""
    dim = _channel_dim(features, dim)
    return features.movedim(dim, -1).reshape(-1, features.shape[dim])

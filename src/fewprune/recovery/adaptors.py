"""Identity-initialised 1×1 adaptors that can be trained around a change and then folded away.

An adaptor ``Q`` (C×C) mixes the channels either of a layer's input
(``conv(Q·x)``) or of its output (``Q·conv(x)``). Both fold exactly into the
layer's weights, so a trained adaptor costs nothing at inference:

- input side:  W'[o, i] = Σ_j W[o, j] Q[j, i]
- output side: W'[o, i] = Σ_j Q[o, j] W[j, i],  b' = Q b

Adaptors sit on hooks: while the context is open the model computes with
them; ``absorb()`` folds them in; leaving without absorbing leaves the model
exactly as it was.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.features import record_forward


def mixable(layer: nn.Module) -> bool:
    """Layers whose channels a 1×1 adaptor can mix and be folded into (dense convs and linears)."""
    return isinstance(layer, nn.Linear) or isinstance(layer, nn.Conv2d) and layer.groups == 1


def _mix(q: torch.Tensor, t: torch.Tensor, channel_dim: int) -> torch.Tensor:
    return torch.movedim(torch.tensordot(q, torch.movedim(t, channel_dim, 0), dims=1), 0, channel_dim)


def _channel_dim(layer: nn.Module) -> int:
    return 1 if isinstance(layer, nn.Conv2d) else -1


@torch.no_grad()
def absorb_output(layer: nn.Module, q: torch.Tensor) -> None:
    """Fold an output-side adaptor into a conv/linear: the layer then computes ``Q · layer(x)``."""
    w = layer.weight
    w.copy_((q @ w.reshape(w.shape[0], -1)).reshape(w.shape))
    if layer.bias is not None:
        layer.bias.copy_(q @ layer.bias)


@torch.no_grad()
def absorb_input(layer: nn.Module, q: torch.Tensor) -> None:
    """Fold an input-side adaptor into a conv/linear: the layer then computes ``layer(Q · x)``."""
    w = layer.weight
    layer.weight.copy_(torch.tensordot(w, q, dims=([1], [0])).movedim(-1, 1))


class Adaptors:
    """Adaptors at ``sites`` ((layer name, "in" | "out") pairs) of ``model``, as a context manager.

    >>> with Adaptors(model, [("layer2.1.conv1", "in")]) as adaptors:
    ...     train(adaptors.parameters())
    ...     adaptors.absorb()
    """

    def __init__(self, model: nn.Module, sites: list[tuple[str, str]]):
        self.model = model
        self.sites = list(dict.fromkeys(sites))
        self.weights: dict[tuple[str, str], nn.Parameter] = {}
        self._handles = []

    def __enter__(self) -> Adaptors:
        for name, side in self.sites:
            layer = self.model.get_submodule(name)
            if not mixable(layer) or side not in ("in", "out"):
                raise ValueError(f"cannot place an {side!r} adaptor on {name} ({type(layer).__name__})")
            width = layer.weight.shape[1] if side == "in" else layer.weight.shape[0]
            q = nn.Parameter(torch.eye(width, dtype=layer.weight.dtype, device=layer.weight.device))
            self.weights[(name, side)] = q
            dim = _channel_dim(layer)
            if side == "in":
                hook = layer.register_forward_pre_hook(lambda m, args, q=q, dim=dim: (_mix(q, args[0], dim), *args[1:]))
            else:
                hook = layer.register_forward_hook(lambda m, args, out, q=q, dim=dim: _mix(q, out, dim))
            self._handles.append(hook)
        return self

    def parameters(self) -> list[nn.Parameter]:
        return list(self.weights.values())

    def absorb(self) -> None:
        """Fold every adaptor into its layer and remove the hooks (the model now computes the same without them)."""
        self._remove_hooks()
        for (name, side), q in self.weights.items():
            layer = self.model.get_submodule(name)
            (absorb_input if side == "in" else absorb_output)(layer, q.detach())

    def _remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __exit__(self, *exc) -> None:
        self._remove_hooks()


def adaptor_sites(model: nn.Module, hole: str, blocks: list[str], example: torch.Tensor) -> list[tuple[str, str]]:
    """Where PRACTISE puts adaptors around the dropped block ``hole`` (now an identity in ``model``).

    The hole's *stage* is the removable blocks sharing its parent module and
    its feature shape.
    Output adaptors go on the last dense layer of every earlier block of the
    stage (its branch end); input adaptors on the dense layers that read the
    input of every later block, and on those that read the stage's output
    outside it (the next stage's first convolutions). All fold into those layers.
    Empty when no such layer exists: the only removable block of its stage read
    through pooling (torchvision resnet18's ``layer4.1``), or a transformer's
    first block (every reader goes through LayerNorm).
    """
    if hole not in blocks:
        raise ValueError(f"{hole!r} is not one of the removable blocks")
    parent = hole.rpartition(".")[0]
    siblings = [b for b in blocks if b.rpartition(".")[0] == parent]
    layers = {n for n, m in model.named_modules() if mixable(m)}
    calls = record_forward(model, example, layers | set(siblings))
    block_inputs = {n: i[0] for n, i, _ in calls if n in siblings}
    # The stage: siblings working at the hole's feature shape (MobileNetV2 keeps all its blocks in one Sequential).
    stage = [b for b in siblings if block_inputs[b].shape == block_inputs[hole].shape]
    position = stage.index(hole)
    stage_output = next(o for n, _, o in reversed(calls) if n == stage[-1])

    def inside(name: str, block: str) -> bool:
        return name.startswith(block + ".")

    sites = []
    for block in stage[:position]:
        last = [n for n, _, _ in calls if n in layers and inside(n, block)]
        if last:
            sites.append((last[-1], "out"))
    for block in stage[position + 1 :]:
        sites += [(n, "in") for n, i, _ in calls
                  if n in layers and inside(n, block) and i and i[0] is block_inputs[block]]
    sites += [(n, "in") for n, i, _ in calls
              if n in layers and not any(inside(n, b) for b in stage) and i and i[0] is stage_output]
    return list(dict.fromkeys(sites))

"""Layer-wise least-squares reconstruction (ThiNet / channel-pruning style; methods §6.4): closed form, label-free.

Front to back, each pruned layer's weights are refitted so that, on the few
samples, the layer fed the *student's* input gives the *teacher's* output
(on the channels the student kept):

    W = argmin ‖f_T(X_T) − conv(X_S, W)‖² + λ‖W − W₀‖²

solved exactly on the layer's input patches (normal equations accumulated
batch by batch, so memory does not grow with the samples), with a ridge
towards the current weights ``W₀`` (λ = ``ridge`` × the mean diagonal of
the patches' Gram matrix) for layers with fewer patches than weights. A
layer with far more inputs than the samples give rows (a VGG classifier's
25 088) is solved in the equivalent kernel form instead, rows × rows, whose
Gram would otherwise take gigabytes (torchvision vgg11_bn: killed for memory
at 18 GB before, 30 s now). Each
layer sees inputs that already carry the upstream refits, so errors do not
pile up the way they do when a layer is fitted on the teacher's inputs.

Against the neighbours: FSKD fits only a 1×1 mixing of a layer's outputs
(C² numbers), this the whole kernel; cross distillation (``cd``) trains the
student layer on the teacher's input and the teacher's layer on the
student's, neither of which is the pair the student meets. On
resnet20-fmnist at 70% MACs with 50 samples (seed 0), the ``cd`` code trained
on this objective instead reached 82.3% against CD's 41.8% and FSKD's 72.7%;
the closed form reached 86.3% in 9 s. On resnet56-fmnist at 70% MACs (seed 0,
one shared thread): 89.85% with 50 samples in about a minute (``l1+fskd``
72.19, ``l1+cd`` 51.16, ``l1+mir`` 89.06 in 161 s), 63.1% with 10 (49.81,
39.22, 68.43), and as MiR's start, ``l1+lsq+mir`` 74.61% with 10
(``l1+fskd+mir`` 69.79). The ridge of 1e-2 was 0.15–1.1 points ahead of 1e-3
in all four settings (and of 1e-1 at 10 samples). Not every recovery gains
from it as a start: before CMa's block-wise mimicking (``cma`` allocation,
``lsq+mir-blocks``, 10 samples, 70%) it left 78.2% against 91.11% without,
its fit to ten images' deep features being a worse start than the teacher's
own weights; with the views below 86.61% (and 93.42 against 93.96 at 50%).

A grouped convolution's groups are independent systems, so a depthwise conv
is refitted channel by channel (its k·k taps). On mobilenetv2-fmnist (seed 0,
ad hoc, labels hidden) lsq is the strongest recovery we measured there:
92.04% at 50% MACs with 50 samples in about 16 s (``l1+mir`` 89.80 in about
8 min, ``cma`` 86.76), 89.03% at 70% (``l1+mir`` 79.30, ``cma`` 81.52) and
64.0% at 70% with 10 (``l1+mir`` 44.11; ``l1+lsq+mir`` 73.0, measured before
the depthwise refit). Refitting the
depthwise convs as well as the dense ones moved the four ``l1+lsq`` cells by
−0.5 to +0.6 points (mean +0.16). ``benchmarks/recovery.md`` has the sweep
over seeds.

Few images give few rows, and the fit then follows those images too closely:
by default (``views="auto"``) lsq fits on the samples plus randomly shifted
and flipped copies of them (the training recoveries' augmentation; the
teacher's outputs on each copy are the targets), enough for 256 images but
at most 8 views of each sample. Measured ad hoc against the samples alone
(seed 0, labels hidden, one shared thread; 50% / 70% MACs removed): with 10
samples (8 views) mobilenetv2-fmnist 78.59 → 86.97 and 64.03 → 73.15%,
resnet56-fmnist 86.78 → 88.51 and 63.13 → 70.09%, each in under 30 s; with
50 (6 views) mobilenetv2 92.04 → 92.22 and 89.03 → 89.83, resnet56 93.05 →
93.31 and 89.85 → 90.53, in about a minute. More views did worse: 16 and 32
of 10 mobilenetv2 samples gave 86.48 and 86.40 at 50%, 32 gave 70.34 at 70%.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..criteria import Batch
from ..models.features import channel_rows, module_io, output_channel_dim, record_forward, select_channels
from ..modes import eval_mode
from ..progress import progress_bar
from ..structure import Pruned
from .base import augment_batch, register_recovery


def refittable(layer: nn.Module) -> bool:
    """Layers whose weights a linear least-squares fit can set: convolutions (a grouped or depthwise one group by
    group) and linears."""
    return isinstance(layer, nn.Linear | nn.Conv2d)


def _groups(layer: nn.Module) -> int:
    return layer.groups if isinstance(layer, nn.Conv2d) else 1


def layer_patches(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the layer multiplies by its flattened weights, group by group: groups × positions × (a group's inputs ·
    kernel taps), plus a column of ones for a bias, so that group g's outputs at every position are
    ``patches[g] @ [W_g | b_g]ᵀ`` (positions in the order of :func:`~fewprune.models.features.channel_rows` of
    its output; a dense layer is one group)."""
    if isinstance(layer, nn.Conv2d):
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        x = F.pad(x, layer._reversed_padding_repeated_twice, mode=mode)  # every padding form, 'same' too
        cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # N × (C·k·k) × L
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])  # channel-major columns: a group's are contiguous
    else:
        rows = x.reshape(-1, x.shape[-1])
    rows = rows.reshape(len(rows), _groups(layer), -1).transpose(0, 1)
    if layer.bias is not None:
        rows = torch.cat([rows, rows.new_ones(*rows.shape[:2], 1)], dim=2)
    return rows


def _flat_weight(layer: nn.Module) -> torch.Tensor:
    """The weights as groups × a group's outputs × (its inputs · taps [+ bias])."""
    w = layer.weight.reshape(layer.weight.shape[0], -1)
    flat = torch.cat([w, layer.bias[:, None]], dim=1) if layer.bias is not None else w
    return flat.reshape(_groups(layer), -1, flat.shape[1])


def _set_flat_weight(layer: nn.Module, flat: torch.Tensor) -> None:
    flat = flat.reshape(-1, flat.shape[-1])
    if layer.bias is not None:
        flat, bias = flat[:, :-1], flat[:, -1]
        layer.bias.copy_(bias)
    layer.weight.copy_(flat.reshape(layer.weight.shape))


def _per_group(targets: torch.Tensor, groups: int) -> torch.Tensor:
    """Targets (rows × outputs, a group's outputs contiguous) as groups × rows × a group's outputs, in float64."""
    return targets.double().reshape(len(targets), groups, -1).transpose(0, 1)


class NormalEquations:
    """``Σ PᵀP``, ``Σ PᵀY`` and ``Σ‖Y‖²`` per group over batches of patches ``P`` (groups × rows × features) and
    targets ``Y`` (rows × outputs, a group's outputs contiguous), in float64: one independent system per group."""

    def __init__(self):
        self.gram = self.cross = None
        self.target_energy, self.rows = 0.0, 0

    def add(self, patches: torch.Tensor, targets: torch.Tensor) -> None:
        p, y = patches.double(), _per_group(targets, len(patches))
        gram, cross = p.mT @ p, p.mT @ y
        if self.gram is None:
            self.gram, self.cross = gram, cross
        else:  # in place: a wide layer's Gram is the largest thing lsq holds
            self.gram.add_(gram)
            self.cross.add_(cross)
        self.target_energy += float(y.pow(2).sum())
        self.rows += p.shape[1]

    def mse(self, flat: torch.Tensor) -> float:
        """Mean squared error of the weights ``flat`` (groups × outputs × features) over every target entry."""
        w = flat.double()
        error = self.target_energy - 2 * float((w.mT * self.cross).sum()) + float(((w @ self.gram) * w).sum())
        return max(error, 0.0) / (self.rows * w.shape[0] * w.shape[1])

    def solve(self, start: torch.Tensor, ridge: float) -> torch.Tensor:
        """The weights minimising the squared error + λ‖W − start‖², λ = ridge × mean diagonal of each group's
        Gram."""
        lam = ridge * self.gram.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-12)
        system = self.gram.clone()
        system.diagonal(dim1=1, dim2=2).add_(lam[:, None])
        solution = torch.linalg.solve(system, self.cross + lam[:, None, None] * start.double().mT)
        return solution.mT.to(start.dtype)


class KernelEquations:
    """The same ridge problem solved through the rows' kernel ``P·Pᵀ`` (rows × rows) instead of the features' Gram
    ``PᵀP``: for a layer with far more inputs than the samples give rows, whose Gram would take gigabytes (a VGG
    classifier reads 25 088 features; 50 images give 50 rows). It keeps the patches themselves.

    With ``R = Y − P·W₀``: ``W = W₀ + Pᵀ(P·Pᵀ + λI)⁻¹R``, which equals the normal equations' ``W₀ + (PᵀP +
    λI)⁻¹PᵀR`` (push-through identity).
    """

    def __init__(self):
        self._patches: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._stacked: tuple[torch.Tensor, torch.Tensor] | None = None

    def add(self, patches: torch.Tensor, targets: torch.Tensor) -> None:
        p = patches.double()
        self._patches.append(p)
        self._targets.append(_per_group(targets, len(p)))
        self._stacked = None

    def _all(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._stacked is None:
            self._stacked = torch.cat(self._patches, dim=1), torch.cat(self._targets, dim=1)
        return self._stacked

    @property
    def rows(self) -> int:
        return sum(p.shape[1] for p in self._patches)

    def mse(self, flat: torch.Tensor) -> float:
        """Mean squared error of the weights ``flat`` (groups × outputs × features) over every target entry."""
        p, y = self._all()
        w = flat.double()
        return float((y - p @ w.mT).pow(2).sum()) / (self.rows * w.shape[0] * w.shape[1])

    def solve(self, start: torch.Tensor, ridge: float) -> torch.Tensor:
        """As :meth:`NormalEquations.solve`, with the same λ (the Gram's mean diagonal is Σ P² / features)."""
        p, y = self._all()
        w0 = start.double()
        lam = ridge * (p.pow(2).sum(dim=(1, 2)) / p.shape[2]).clamp_min(1e-12)
        kernel = p @ p.mT
        kernel.diagonal(dim1=1, dim2=2).add_(lam[:, None])
        delta = p.mT @ torch.linalg.solve(kernel, y - p @ w0.mT)  # groups × features × outputs
        return (w0 + delta.mT).to(start.dtype)


# views="auto": enough views of the samples for AUTO_VIEW_IMAGES images, at most MAX_AUTO_VIEWS of each (more
# gained nothing on ten samples; see the module's docstring).
AUTO_VIEW_IMAGES, MAX_AUTO_VIEWS = 256, 8


def views_per_sample(views: int | str, samples: int) -> int:
    """How many views of each sample lsq fits on: ``views`` itself (1 = the samples alone), or for ``"auto"`` enough
    for :data:`AUTO_VIEW_IMAGES` images, at most :data:`MAX_AUTO_VIEWS`."""
    if views == "auto":
        return max(1, min(MAX_AUTO_VIEWS, math.ceil(AUTO_VIEW_IMAGES / samples)))
    if isinstance(views, bool) or not isinstance(views, int) or views < 1:
        raise ValueError(f"lsq views={views!r}: want a whole number of views per sample, 1 or more, or 'auto'")
    return views


def with_views(images: torch.Tensor, views: int, seed: int) -> torch.Tensor:
    """The images, then ``views − 1`` randomly shifted and flipped copies of them (drawn from ``seed``)."""
    if views == 1:
        return images  # no copy of what may be hundreds of large images
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([images] + [augment_batch(images, generator) for _ in range(views - 1)])


GRAM_LIMIT_BYTES = 256 * 2**20  # above this, a layer with fewer rows than features is solved in the kernel form


def equations_for(groups: int, features: int, rows: int) -> NormalEquations | KernelEquations:
    """The normal equations (one features × features Gram per group), or the kernel form where that Gram would
    pass :data:`GRAM_LIMIT_BYTES` and the samples give fewer rows than the layer has features."""
    if rows < features and groups * features**2 * 8 > GRAM_LIMIT_BYTES:
        return KernelEquations()
    return NormalEquations()


@register_recovery("lsq")
@torch.no_grad()
def least_squares(student: nn.Module, teacher: nn.Module, batch: Batch, seed: int = 0, pruned: Pruned | None = None,
                  ridge: float = 1e-2, views: int | str = "auto", batch_size: int = 64,
                  progress: bool = True) -> dict:
    """Refit every pruned conv (grouped ones per group) and linear in closed form, front to back, on the samples
    and ``views − 1`` shifted and flipped copies of each (``"auto"``: :func:`views_per_sample`; ``seed`` draws
    them)."""
    if pruned is None:
        raise ValueError("lsq needs to know what was pruned (call it through fewprune.compress)")
    views = views_per_sample(views, len(batch.images))
    images = with_views(batch.images, views, seed)
    candidates = [n for n, m in student.named_modules()
                  if refittable(m) and (n in pruned.kept_inputs or n in pruned.kept_outputs)]
    order = list(dict.fromkeys(n for n, _, _ in record_forward(student, images[:1], candidates)))
    fitted = []
    with eval_mode(student, teacher):
        for name in progress_bar(order, total=len(order), description="least squares", enabled=progress):
            layer, kept_out = student.get_submodule(name), pruned.kept_outputs.get(name)
            dim = output_channel_dim(layer)
            equations = None
            for (_, xs, _), (_, _, yt) in zip(module_io(student, [name], images, batch_size),
                                              module_io(teacher, [name], images, batch_size), strict=True):
                patches = layer_patches(layer, xs)
                if equations is None:  # every image gives as many rows as the first ones
                    groups, rows, features = patches.shape
                    equations = equations_for(groups, features, rows * len(images) // len(xs))
                equations.add(patches, channel_rows(select_channels(yt, kept_out, dim), dim))
            start = _flat_weight(layer)
            solution = equations.solve(start, ridge)
            before, after = equations.mse(start), equations.mse(solution)
            if after <= before:  # the ridge can only cost where the fit is already exact: keep the better
                _set_flat_weight(layer, solution)
            fitted.append({"layer": name, "mse_before": before, "mse_after": min(before, after),
                           "patches": equations.rows,
                           "form": "kernel" if isinstance(equations, KernelEquations) else "normal"})
    return {"layers": fitted, "ridge": ridge, "views": views, "images": len(images)}


least_squares.needs_structure = True

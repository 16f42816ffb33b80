"""FSKD — Few Sample Knowledge Distillation (Li et al. CVPR 2020): closed-form per-layer corrections.

After pruning, each layer whose inputs shrank gets a 1×1 linear correction
``Q`` on its outputs, fitted by least squares so that, on the few samples,
the student's layer output matches the teacher's (restricted to the channels
the student kept). ``Q`` is folded into the layer's weights (``W ← Q·W``,
``b ← Q·b``), so inference costs nothing extra. Layers are fitted in forward
order, each on inputs that already carry the upstream corrections. Label-free.
"""

from __future__ import annotations

import torch
from torch import nn

from ..criteria import Batch
from ..models.features import channel_rows, module_io, output_channel_dim, select_channels
from ..structure import Pruned
from .adaptors import absorb_output
from .base import register_recovery


def fit_correction(zs: torch.Tensor, zt: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """``Q`` minimising ‖zs·Qᵀ − zt‖² + λ‖Q − I‖², λ = ridge · mean eigenvalue of zsᵀzs (shrinks towards identity)."""
    zs, zt = zs.double(), zt.double()
    gram = zs.T @ zs
    lam = ridge * gram.diagonal().mean().clamp_min(1e-12)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    qt = torch.linalg.solve(gram + lam * eye, zs.T @ zt + lam * eye)
    return qt.T.float()


@register_recovery("fskd")
@torch.no_grad()
def fskd(student: nn.Module, teacher: nn.Module, batch: Batch, seed: int = 0, pruned: Pruned | None = None,
         ridge: float = 1e-3, batch_size: int = 128, progress: bool = True) -> dict:
    """Fit and absorb one least-squares correction per layer whose inputs were pruned."""
    if pruned is None:
        raise ValueError("fskd needs to know what was pruned (call it through fewprune.compress)")
    modules = dict(student.named_modules())
    layers = [n for n, m in modules.items() if n in pruned.reduced_inputs
              and isinstance(m, nn.Conv2d | nn.Linear) and getattr(m, "groups", 1) == 1]
    student.eval()
    teacher.eval()
    fitted = []
    for name in layers:
        zs_parts, zt_parts = [], []
        dim = output_channel_dim(modules[name])
        for (_, _, ys), (_, _, yt) in zip(module_io(student, [name], batch.images, batch_size),
                                          module_io(teacher, [name], batch.images, batch_size), strict=True):
            zs_parts.append(channel_rows(ys, dim))
            zt_parts.append(channel_rows(select_channels(yt, pruned.kept_outputs.get(name), dim), dim))
        zs, zt = torch.cat(zs_parts), torch.cat(zt_parts)
        before = (zs - zt).pow(2).mean().item()
        q = fit_correction(zs, zt, ridge)
        absorb_output(modules[name], q)
        after = (zs @ q.T - zt).pow(2).mean().item()
        fitted.append({"layer": name, "mse_before": before, "mse_after": after})
    return {"layers": fitted}


fskd.needs_structure = True

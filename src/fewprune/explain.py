"""Pictures that explain a pruning decision (PNG via matplotlib).

``concept_mask_figures`` shows, for each removable block and a few images,
where the channels' concept masks lie before and after the block and which
pixels flip — the evidence CMa ranks blocks by.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .criteria.blocks import _block_io
from .criteria.concept_mask import concept_mask
from .structure import find_blocks


def concept_mask_figures(model: nn.Module, images: torch.Tensor, out_dir: str | Path, theta: float = 0.2,
                         blocks: list[str] | None = None) -> list[Path]:
    """One PNG per block (input coverage, output coverage, flipped share per image) and a divergence bar chart.

    The model runs in eval mode and is left as it was. Returns the written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = find_blocks(model, images[:1]) if blocks is None else blocks
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no shape-preserving residual block to explain")
    size = tuple(images.shape[-2:])
    written, divergence = [], {}
    for name, x, y in _block_io(model, blocks, images, batch_size=len(images)):
        before, after = concept_mask(x, size, theta), concept_mask(y, size, theta)
        flipped = (before ^ after).float().mean(1)
        divergence[name] = int((before ^ after).sum())
        fig, axes = plt.subplots(len(images), 4, figsize=(8, 2 * len(images)), squeeze=False)
        panels = (("image", images[:, 0]), ("input masks", before.float().mean(1)),
                  ("output masks", after.float().mean(1)), ("flipped", flipped))
        for row in range(len(images)):
            for col, (title, maps) in enumerate(panels):
                ax = axes[row][col]
                ax.imshow(maps[row].numpy(), cmap="gray" if col == 0 else "magma",
                          vmin=None if col == 0 else 0, vmax=None if col == 0 else 1)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(title, fontsize=9)
        fig.suptitle(f"{name}: {divergence[name]} mask pixels flip (θ = {theta})", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"concept-masks-{name.replace('.', '_')}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(divergence)), 3.5))
    ax.bar(range(len(divergence)), list(divergence.values()))
    ax.set_xticks(range(len(divergence)), list(divergence), rotation=90, fontsize=7)
    ax.set_ylabel("flipped mask pixels")
    ax.set_title(f"concept-mask divergence per block\n({len(images)} images; low = removable)", fontsize=9)
    fig.tight_layout()
    path = out_dir / "concept-mask-divergence.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [*written, path]

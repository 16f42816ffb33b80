"""Pictures that explain a pruning decision (PNG via matplotlib).

``concept_mask_figures`` shows, for each removable block and a few images,
where the channels' concept masks lie before and after the block and which
pixels flip — the evidence CMa ranks blocks by. ``lrp_figures`` shows each
image's LRP heatmap and which channels of a chosen layer carry the most and
the least relevance — the evidence ``lrp`` prunes by.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .criteria.concept_mask import concept_mask
from .models.features import module_io
from .structure import find_blocks


def picture(image: torch.Tensor, mean=None, std=None) -> tuple:
    """A normalised ``C×H×W`` input as matplotlib draws it: ``(H×W array, "gray")`` for one channel, or
    ``(H×W×3 array in [0, 1], None)`` for three, un-normalised with the dataset's ``mean``/``std`` when given
    (else stretched to its own range), so a photo shows in its colours."""
    image = image.detach().cpu().float()
    if image.shape[0] != 3:
        return image[0].numpy(), "gray"
    if mean is not None and std is not None:
        colour = image * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    else:
        colour = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    return colour.clamp(0, 1).permute(1, 2, 0).numpy(), None


def concept_mask_figures(model: nn.Module, images: torch.Tensor, out_dir: str | Path, theta: float = 0.2,
                         blocks: list[str] | None = None, mean=None, std=None) -> list[Path]:
    """One PNG per block (input coverage, output coverage, flipped share per image) and a divergence bar chart.

    The model runs in eval mode and is left as it was. ``mean``/``std``: the
    images' normalisation, to draw them in their colours. Returns the written files.
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
    for name, x, y in module_io(model, blocks, images, batch_size=len(images)):
        before, after = concept_mask(x, size, theta), concept_mask(y, size, theta)
        flipped = (before ^ after).float().mean(1)
        divergence[name] = int((before ^ after).sum())
        coverage_in, coverage_out = before.float().mean(1), after.float().mean(1)
        # Each pixel's share of channels whose mask covers it is about θ on average: a 0–1 scale would show
        # nothing. Input and output share one scale (so they compare), up to the largest share in the figure.
        shared = max(float(coverage_in.max()), float(coverage_out.max()), 1e-6)
        panels = (("image", images, None), ("input: share of channels", coverage_in, shared),
                  ("output: share of channels", coverage_out, shared),
                  ("flipped: share of channels", flipped, max(float(flipped.max()), 1e-6)))
        fig, axes = plt.subplots(len(images), 4, figsize=(9, 2 * len(images)), squeeze=False)
        for row in range(len(images)):
            for col, (title, maps, top) in enumerate(panels):
                ax = axes[row][col]
                if top is None:  # the image itself
                    pixels, cmap = picture(maps[row], mean, std)
                    shown = ax.imshow(pixels, cmap=cmap)
                else:
                    shown = ax.imshow(maps[row].numpy(), cmap="magma", vmin=0, vmax=top)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(title, fontsize=8)
                if top is not None and col != 1:
                    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
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


def lrp_figures(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, out_dir: str | Path,
                layer: str | None = None, shown: int = 4, mean=None, std=None) -> list[Path]:
    """``lrp-heatmaps.png`` (image and input relevance per image) and ``lrp-channels-LAYER.png``.

    The channel figure ranks ``layer``'s output channels by |relevance| summed over the images and
    draws the spatial relevance of the ``shown`` most and least relevant ones. ``layer`` defaults to the
    last convolution. Relevance is seeded at ``labels`` (or the model's predictions). ``mean``/``std``: the
    images' normalisation, to draw them in their colours.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .criteria.lrp import relevance

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    layer = layer or (convs[-1] if convs else None)
    if layer is None or layer not in dict(model.named_modules()):
        raise ValueError(f"choose a layer to explain (--layer); convolutions: {', '.join(convs[:8])}…")
    maps, input_relevance = relevance(model, images, labels, layers=[layer])
    heat = input_relevance.sum(1)
    fig, axes = plt.subplots(len(images), 2, figsize=(4, 2 * len(images)), squeeze=False)
    for row in range(len(images)):
        limit = float(heat[row].abs().max()) or 1.0
        pixels, cmap = picture(images[row], mean, std)
        axes[row][0].imshow(pixels, cmap=cmap)
        axes[row][1].imshow(heat[row].numpy(), cmap="bwr", vmin=-limit, vmax=limit)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("image", fontsize=9)
    axes[0][1].set_title("LRP relevance", fontsize=9)
    fig.tight_layout()
    heatmaps = out_dir / "lrp-heatmaps.png"
    fig.savefig(heatmaps, dpi=90)
    plt.close(fig)

    per_channel = maps[layer].abs()
    totals = per_channel.reshape(per_channel.shape[0], -1).sum(1)
    order = torch.argsort(totals, descending=True)
    picks = [*order[:shown].tolist(), *order[-shown:].tolist()]
    fig = plt.figure(figsize=(2 * shown, 6))
    grid = fig.add_gridspec(3, shown)
    bars = fig.add_subplot(grid[0, :])
    bars.bar(range(len(totals)), totals[order].numpy())
    bars.set_title(f"{layer}: |relevance| per channel, sorted ({len(images)} images)", fontsize=9)
    bars.set_xticks([])
    for k, channel in enumerate(picks):
        ax = fig.add_subplot(grid[1 + k // shown, k % shown])
        spatial = per_channel[channel] if per_channel.ndim == 3 else per_channel[channel].reshape(1, -1)
        ax.imshow(spatial.numpy(), cmap="magma")
        ax.set_title(f"{'most' if k < shown else 'least'} #{channel}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    channels = out_dir / f"lrp-channels-{layer.replace('.', '_')}.png"
    fig.savefig(channels, dpi=90)
    plt.close(fig)
    return [heatmaps, channels]

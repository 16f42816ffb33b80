"""Standard batch augmentations on image tensors (any dtype), driven by an explicit generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator, flip: bool = True,
                     mode: str = "constant") -> torch.Tensor:
    """Random ``padding``-pixel translation and horizontal flip per image.

    ``mode="constant"`` zero-pads like RandomCrop (right for raw pixels);
    ``"replicate"`` repeats the edge, so normalised backgrounds stay background.
    """
    n, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4, mode=mode)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).tolist()
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(images.device)  # drawn on the CPU, like every draw
        out[mirror] = out[mirror].flip(-1)
    return out


def random_crop_flip_with_masks(images: torch.Tensor, masks: torch.Tensor, padding: int, generator: torch.Generator,
                                flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`random_crop_flip` of uint8 images and their label masks (N×H×W, labels up to 255) alike: each mask
    moves with its image. The border shifted in is black and labelled 0 (background)."""
    both = random_crop_flip(torch.cat([images, masks.to(images.dtype).unsqueeze(1)], 1), padding, generator, flip)
    return both[:, :-1], both[:, -1].to(masks.dtype)

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
        mirror = torch.rand(n, generator=generator) < 0.5
        out[mirror] = out[mirror].flip(-1)
    return out

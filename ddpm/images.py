"""Small image helpers shared by the trainer, the command line and the app (numpy + PIL only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W, C) uint8."""
    return (images.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def make_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one (rows*(H+pad)+pad, nrow*(W+pad)+pad, C) uint8 image, row-major."""
    arr = to_uint8(images)                                                       # (N, H, W, C)
    n, h, w, c = arr.shape
    nrow = max(1, min(nrow, n))
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = arr[i]
    return grid


def save_grid(path: str | Path, images: torch.Tensor, nrow: int = 8, scale: int = 1) -> None:
    """Write a PNG grid; `scale` enlarges it with nearest-neighbour (crisp pixels)."""
    from PIL import Image
    grid = make_grid(images, nrow)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)

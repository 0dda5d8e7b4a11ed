"""Tile a batch of images into one picture with thin borders."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..files import write_bytes


def tile(images: torch.Tensor, *, ncol: int | None = None, border: int = 1, fill: int = 128) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (rows*(H+b)+b, cols*(W+b)+b[, 3]) uint8, grey or RGB as the data is."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    canvas = np.full((nrow * (h + border) + border, ncol * (w + border) + border, c), fill, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        y, x = border + r * (h + border), border + q * (w + border)
        canvas[y : y + h, x : x + w] = pixels[i]
    return canvas[..., 0] if c == 1 else canvas


def save_grid(images: torch.Tensor, path: str | Path, *, ncol: int | None = None, scale: int = 1) -> Path:
    """Write a tiled PNG (atomically), upscaled by `scale` with nearest neighbour for small images."""
    img = Image.fromarray(tile(images, ncol=ncol))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return write_bytes(path, png_bytes(img))


def png_bytes(img: Image.Image) -> bytes:
    """The image encoded as PNG, in memory (every writer hands `vaelab.files.write_bytes` whole bytes)."""
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()

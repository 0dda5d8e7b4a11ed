"""The synthetic `shapes` set: one white shape on black per image, drawn in code.

Like dSprites, but drawn at any size: each image holds a square, an ellipse, a
triangle or a heart at a random scale, rotation and position. The factors are
stored per image, so disentanglement metrics can use them:

    shape     0 square, 1 ellipse, 2 triangle, 3 heart (= the label)
    scale     0.5 .. 1.0   (circumradius = scale * 0.4 of the half-width)
    rotation  0 .. 2*pi    radians, counter-clockwise on screen
    pos_x     0 .. 1       center, 0 = left edge of the allowed range
    pos_y     0 .. 1       center, 0 = top edge of the allowed range

Rendering is vectorised (numpy, single-threaded on purpose: torch's thread
pool slows to a crawl when the cores are busy with training). Every shape has
a signed distance function (negative inside, from Inigo Quilez's 2D SDFs),
evaluated at the pixel centers, and a pixel's coverage is
clamp(0.5 - distance_in_pixels, 0, 1): antialiased edges at the cost of one
evaluation per pixel, in a window around the shape. The whole shape always lies inside
the image. Each split has its own fixed seed, so the sets are the same in
every run; they are cached in memory per (split, size).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..errors import VaelabError
from .imageset import ImageSet

CLASS_NAMES = ("square", "ellipse", "triangle", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "pos_x", "pos_y")
SIZES = {"train": 20_000, "test": 2_000}
SEEDS = {"train": 7_001, "test": 7_002}
DEFAULT_SIZE = 64
MIN_SIZE = 8

_RADIUS = 0.4  # circumradius at scale 1, as a fraction of the half-width
_POS_RANGE = 1.0 - _RADIUS - 0.05  # centers lie in [-_POS_RANGE, _POS_RANGE] of the half-width
_CHUNK = 2_000  # images rendered at once; bounds the temporary (chunk, W, W) float arrays


# Signed distances in the shape's own frame (circumradius 1, y up), on float32 numpy arrays.
def _sd_square(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    half = math.sqrt(0.5)  # half side for circumradius 1
    qx, qy = np.abs(x) - half, np.abs(y) - half
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _sd_ellipse(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a, b = 1.0, 0.55  # semi-axes; the gradient-normalised approximation is exact on the edge
    k0 = np.hypot(x / a, y / b)
    k1 = np.maximum(np.hypot(x / (a * a), y / (b * b)), 1e-6)
    return np.where(k0 < 0.5, -b / 2, k0 * (k0 - 1.0) / k1)  # deep inside: avoid 0/0 at the center


def _sd_triangle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r, k = math.sqrt(3.0) / 2, math.sqrt(3.0)  # half side for circumradius 1, centroid at 0, apex up
    px, py = np.abs(x) - r, y + r / k
    fold = px + k * py > 0
    px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * r, 0)
    return -np.hypot(px, py) * np.sign(py)


def _sd_heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Quilez's heart has its tip at 0 and lobes up to y = 1.104; center it and scale to circumradius ~1.
    s = 0.674
    px, py = np.abs(x) * s, y * s + 0.55
    lobe = np.hypot(px - 0.25, py - 0.75) - math.sqrt(2.0) / 4
    t = 0.5 * np.maximum(px + py, 0)
    body = np.sqrt(np.minimum(px**2 + (py - 1.0) ** 2, (px - t) ** 2 + (py - t) ** 2)) * np.sign(px - py)
    return np.where(px + py > 1.0, lobe, body) / s


_SDFS = (_sd_square, _sd_ellipse, _sd_triangle, _sd_heart)  # indexed by label


def render(factors: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, 1, size, size) uint8 of the shapes described by `factors` (N, 5), see module doc."""
    f = factors.numpy().astype(np.float32)
    images = np.zeros((len(f), size, size), dtype=np.uint8)
    half = np.float32(size / 2)  # pixels per half-width
    # Only a window that holds the largest shape plus its antialiased edge is evaluated: ~5x less work.
    window = min(size, math.ceil(2 * _RADIUS * size / 2) + 3)
    steps = np.arange(window)
    for label, sdf in enumerate(_SDFS):
        of_label = np.flatnonzero(f[:, 0] == label)
        for rows in np.array_split(of_label, math.ceil(len(of_label) / _CHUNK)) if len(of_label) else ():
            scale, angle, pos_x, pos_y = f[rows, 1:].T  # each (B,)
            cx, cy = (2 * pos_x - 1) * _POS_RANGE, (2 * pos_y - 1) * _POS_RANGE  # (B,) in half-widths, y down
            x0 = np.clip(np.floor((cx + 1) * half - window / 2).astype(np.int64), 0, size - window)  # (B,)
            y0 = np.clip(np.floor((cy + 1) * half - window / 2).astype(np.int64), 0, size - window)
            cols, lines = x0[:, None] + steps, y0[:, None] + steps  # (B, W) pixel indices
            dx = ((cols + 0.5) / half - 1 - cx[:, None])[:, None, :].astype(np.float32)  # (B, 1, W)
            dy = (cy[:, None] - ((lines + 0.5) / half - 1))[:, :, None].astype(np.float32)  # (B, W, 1), y up
            radius = (scale * _RADIUS)[:, None, None]  # (B, 1, 1)
            cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
            x = (cos * dx + sin * dy) / radius  # (B, W, W) in the shape's own frame
            y = (cos * dy - sin * dx) / radius
            coverage = np.clip(0.5 - sdf(x, y) * radius * half, 0, 1)  # distance in pixels -> coverage
            pixels = np.rint(coverage * 255).astype(np.uint8)
            images[rows[:, None, None], lines[:, :, None], cols[:, None, :]] = pixels
    return torch.from_numpy(images).unsqueeze(1)


def sample_factors(n: int, seed: int) -> torch.Tensor:
    """Factors (n, 5) float32 drawn with a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    shape = torch.randint(len(CLASS_NAMES), (n,), generator=g).float()
    scale = 0.5 + 0.5 * torch.rand(n, generator=g)
    rotation = 2 * math.pi * torch.rand(n, generator=g)
    position = torch.rand(n, 2, generator=g)
    return torch.cat([torch.stack([shape, scale, rotation], 1), position], 1)


@functools.lru_cache(maxsize=4)
def load_shapes(split: str, size: int = DEFAULT_SIZE) -> ImageSet:
    """The `split` of the shapes set at `size` x `size`: images (N, 1, size, size) uint8 (cached)."""
    if size < MIN_SIZE:
        raise VaelabError(f"shapes: image size {size} is too small (at least {MIN_SIZE})")
    factors = sample_factors(SIZES[split], SEEDS[split])
    return ImageSet(
        images=render(factors, size),
        labels=factors[:, 0].long(),
        class_names=CLASS_NAMES,
        factors=factors,
        factor_names=FACTOR_NAMES,
    )

"""The synthetic `shapes` set: one white shape on black per image, drawn in code.

Like dSprites, but drawn at any size: each image holds a square, an ellipse, a
triangle or a heart at a random scale, rotation and position. The factors are
stored per image, so disentanglement metrics can use them:

    shape     0 square, 1 ellipse, 2 triangle, 3 heart (= the label)
    scale     0.5 .. 1.0   (circumradius = scale * 0.4 of the half-width)
    rotation  0 .. 2*pi    radians, counter-clockwise on screen
    pos_x     0 .. 1       center, 0 = left edge of the allowed range
    pos_y     0 .. 1       center, 0 = top edge of the allowed range

Rendering is vectorised: every shape has a signed distance function (negative
inside, from Inigo Quilez's 2D SDFs), evaluated at the pixel centers, and a
pixel's coverage is clamp(0.5 - distance_in_pixels, 0, 1): antialiased edges
at the cost of one evaluation per pixel. The whole shape always lies inside
the image. Each split has its own fixed seed, so the sets are the same in
every run; they are cached in memory per (split, size).
"""

from __future__ import annotations

import functools
import math

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
_CHUNK = 500  # images rendered at once; bounds the temporary (chunk, S, S) float tensors


def _sd_square(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    half = math.sqrt(0.5)  # circumradius 1
    qx, qy = x.abs() - half, y.abs() - half
    outside = torch.hypot(qx.clamp(min=0), qy.clamp(min=0))
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _sd_ellipse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    a, b = 1.0, 0.55  # semi-axes; the gradient-normalised approximation is exact on the edge
    k0 = torch.hypot(x / a, y / b)
    k1 = torch.hypot(x / (a * a), y / (b * b)).clamp(min=1e-6)
    d = k0 * (k0 - 1.0) / k1
    return torch.where(k0 < 0.5, torch.full_like(d, -b / 2), d)  # deep inside: avoid 0/0 at the center


def _sd_triangle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r, k = math.sqrt(3.0) / 2, math.sqrt(3.0)  # half side for circumradius 1, centroid at 0, apex up
    px, py = x.abs() - r, y + r / k
    fold = px + k * py > 0
    px, py = torch.where(fold, (px - k * py) / 2, px), torch.where(fold, (-k * px - py) / 2, py)
    px = px - px.clamp(-2 * r, 0)
    return -torch.hypot(px, py) * torch.sign(py)


def _sd_heart(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Quilez's heart has its tip at 0 and lobes up to y = 1.104; center it and scale to circumradius ~1.
    s = 0.674
    px, py = x.abs() * s, y * s + 0.55
    lobe = torch.hypot(px - 0.25, py - 0.75) - math.sqrt(2.0) / 4
    t = 0.5 * (px + py).clamp(min=0)
    body = torch.sqrt(torch.minimum(px**2 + (py - 1.0) ** 2, (px - t) ** 2 + (py - t) ** 2)) * torch.sign(px - py)
    return torch.where(px + py > 1.0, lobe, body) / s


_SDFS = (_sd_square, _sd_ellipse, _sd_triangle, _sd_heart)  # indexed by label


def render(factors: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, 1, size, size) uint8 of the shapes described by `factors` (N, 5), see module doc."""
    n = factors.shape[0]
    images = torch.empty(n, 1, size, size, dtype=torch.uint8)
    pixel = 2.0 / size  # pixel width in half-width units
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) * pixel - 1.0  # (S,) pixel centers in [-1, 1]
    for start in range(0, n, _CHUNK):
        f = factors[start : start + _CHUNK]
        for label, sdf in enumerate(_SDFS):
            rows = (f[:, 0] == label).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            scale, angle, pos_x, pos_y = f[rows, 1:].unbind(1)  # each (B,)
            radius = (scale * _RADIUS)[:, None, None]  # (B, 1, 1)
            dx = grid[None, None, :] - ((2 * pos_x - 1) * _POS_RANGE)[:, None, None]  # (B, 1, S)
            dy = ((2 * pos_y - 1) * _POS_RANGE)[:, None, None] - grid[None, :, None]  # (B, S, 1), y up
            cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
            x = (cos * dx + sin * dy) / radius  # (B, S, S) in the shape's own frame
            y = (cos * dy - sin * dx) / radius
            distance = sdf(x, y) * radius / pixel  # (B, S, S) signed distance in pixels
            coverage = (0.5 - distance).clamp(0, 1)
            images[start + rows, 0] = (coverage * 255).round().to(torch.uint8)
    return images


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

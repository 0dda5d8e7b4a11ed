"""The synthetic `shapes` set: a dSprites-like disentanglement benchmark, drawn in code at any size.

Each image holds one shape; its five generative factors lie on a discrete grid
with dSprites' sizes (Matthey et al. 2017), 3 * 6 * 40 * 32 * 32 = 737,280
combinations. Factor k takes FACTOR_SIZES[k] values, `factor_values(k)`:

    shape        3   0 square, 1 ellipse, 2 heart (= the label)
    scale        6   0.5 .. 1.0 linearly (circumradius = scale * 0.4 of the half-width)
    orientation  40  2*pi * i / 40, i = 0..39, radians counter-clockwise on screen
    pos_x        32  0 .. 1 linearly, the center; 0 = left end of the allowed range
    pos_y        32  0 .. 1 linearly, the center; 0 = top end of the allowed range

As in dSprites, orientation is not identifiable from the image for symmetric
shapes: a square looks the same every quarter turn, an ellipse every half
turn; the values are kept so the grid stays a product of independent factors.
The factors are defined independently of the image size; the whole shape
always lies inside the image.

Images are binary (0 or 255): a pixel is on when the shape covers its center,
i.e. when its antialiased coverage would be at least 0.5. Every shape has a
signed distance function (negative inside, after Inigo Quilez's 2D SDFs)
evaluated at the pixel centers in a window around the shape. Rendering is
vectorised numpy, single-threaded on purpose (torch's thread pool slows to a
crawl when the cores are busy with training).

Variants (dataset names): `shapes` (white on black, 1 channel), `shapes:colour`
(3 channels; the shape in one of six saturated colours whose channels are 0 or
255, on black) and `shapes:noise` (1 channel; the white shape on a background
of uniform grey noise 0..127). The colour and the noise are nuisances drawn
per image from a seed, not factors: the factors are the same five in every
variant (as in disentanglement_lib's colour and noisy dSprites).

The train and test splits are fixed seeded samples of distinct grid points,
disjoint from each other (dSprites itself has no split); sets are cached in
memory per (split, size, variant, grayscale). Metrics that need images with
some factors fixed draw indices with `sample_factor_indices` and draw them
with `render_grid`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import numpy as np
import torch

from ..errors import VaelabError
from .imageset import ImageSet

CLASS_NAMES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
GRID_SIZE = math.prod(FACTOR_SIZES)  # 737,280
VARIANTS = {"plain": 1, "colour": 3, "noise": 1}  # variant -> channels
COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255))
SIZES = {"train": 20_000, "test": 2_000}
SPLIT_SEED = 7_000  # draws the grid points of both splits at once, so they are disjoint
SEEDS = {"train": 7_001, "test": 7_002}  # the nuisances (colour, noise) of each split
DEFAULT_SIZE = 64
MIN_SIZE = 8

_RADIUS = 0.4  # circumradius at scale 1, as a fraction of the half-width
_POS_RANGE = 1.0 - _RADIUS - 0.05  # centers lie in [-_POS_RANGE, _POS_RANGE] of the half-width
_CHUNK_PIXELS = 1 << 22  # pixels evaluated at once; bounds the temporary (chunk, W, W) float arrays
_STRIDES = tuple(math.prod(FACTOR_SIZES[k + 1 :]) for k in range(len(FACTOR_SIZES)))  # last factor fastest


def factor_values(k: int) -> np.ndarray:
    """The real values (float64, FACTOR_SIZES[k]) of factor k's grid, see the module doc."""
    n = FACTOR_SIZES[k]
    if k == 0:
        return np.arange(n, dtype=np.float64)
    if k == 1:
        return np.linspace(0.5, 1.0, n)
    if k == 2:
        return 2 * math.pi * np.arange(n) / n
    return np.linspace(0.0, 1.0, n)


def _as_indices(indices, what: str) -> np.ndarray:
    """(N, 5) int64 numpy array of factor indices, checked against the grid."""
    a = np.asarray(indices.numpy() if isinstance(indices, torch.Tensor) else indices)
    if a.ndim != 2 or a.shape[1] != len(FACTOR_SIZES) or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be an (N, {len(FACTOR_SIZES)}) integer array, got {a.dtype} {a.shape}")
    a = a.astype(np.int64)
    if ((a < 0) | (a >= np.array(FACTOR_SIZES))).any():
        raise ValueError(f"{what} outside the grid {FACTOR_SIZES}")
    return a


def index_to_factors(indices) -> torch.Tensor:
    """Factor indices (N, 5) int64 of flat grid indices (N,) in 0..GRID_SIZE-1 (the last factor varies fastest)."""
    flat = np.asarray(indices.numpy() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
    if flat.ndim != 1 or ((flat < 0) | (flat >= GRID_SIZE)).any():
        raise ValueError(f"grid indices must be a 1-D array in 0..{GRID_SIZE - 1}")
    strides, sizes = np.array(_STRIDES), np.array(FACTOR_SIZES)
    return torch.from_numpy(flat[:, None] // strides % sizes)


def factors_to_index(factor_indices) -> torch.Tensor:
    """Flat grid indices (N,) int64 of factor indices (N, 5); the inverse of `index_to_factors`."""
    return torch.from_numpy(_as_indices(factor_indices, "factor indices") @ np.array(_STRIDES))


def sample_factor_indices(
    n: int, rng: np.random.Generator | int, fixed: Mapping[int | str, int] | None = None
) -> torch.Tensor:
    """n factor indices (n, 5) int64 drawn uniformly from the grid, with factor k held at index v for each
    k: v in `fixed` (k a column number or a name of FACTOR_NAMES); rng a numpy Generator or a seed."""
    rng = np.random.default_rng(rng)
    columns = [rng.integers(0, size, n, dtype=np.int64) for size in FACTOR_SIZES]
    for k, v in (fixed or {}).items():
        k = FACTOR_NAMES.index(k) if isinstance(k, str) else k
        if not 0 <= v < FACTOR_SIZES[k]:
            raise ValueError(f"factor {FACTOR_NAMES[k]} has indices 0..{FACTOR_SIZES[k] - 1}, got {v}")
        columns[k] = np.full(n, v, dtype=np.int64)
    return torch.from_numpy(np.stack(columns, 1))


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


def _sd_heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Quilez's heart has its tip at 0 and lobes up to y = 1.104; center it and scale to circumradius ~1.
    s = 0.674
    px, py = np.abs(x) * s, y * s + 0.55
    lobe = np.hypot(px - 0.25, py - 0.75) - math.sqrt(2.0) / 4
    t = 0.5 * np.maximum(px + py, 0)
    body = np.sqrt(np.minimum(px**2 + (py - 1.0) ** 2, (px - t) ** 2 + (py - t) ** 2)) * np.sign(px - py)
    return np.where(px + py > 1.0, lobe, body) / s


_SDFS = (_sd_square, _sd_ellipse, _sd_heart)  # indexed by the shape factor


def _draw(idx: np.ndarray, size: int) -> np.ndarray:
    """Binary masks (N, size, size) bool of the shapes at factor indices `idx` (N, 5)."""
    masks = np.zeros((len(idx), size, size), dtype=bool)
    half = np.float32(size / 2)  # pixels per half-width
    # Only a window that holds the largest shape is evaluated: ~5x less work.
    window = min(size, math.ceil(2 * _RADIUS * size / 2) + 3)
    steps = np.arange(window)
    values = [factor_values(k).astype(np.float32) for k in range(1, 5)]
    chunk = max(1, _CHUNK_PIXELS // window**2)
    for label, sdf in enumerate(_SDFS):
        of_label = np.flatnonzero(idx[:, 0] == label)
        for rows in np.array_split(of_label, math.ceil(len(of_label) / chunk)) if len(of_label) else ():
            scale, angle, pos_x, pos_y = (v[idx[rows, k + 1]] for k, v in enumerate(values))  # each (B,)
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
            masks[rows[:, None, None], lines[:, :, None], cols[:, None, :]] = sdf(x, y) <= 0  # coverage >= 0.5
    return masks


def render_grid(factor_indices, size: int = DEFAULT_SIZE, variant: str = "plain", seed: int = 0) -> torch.Tensor:
    """Images (N, C, size, size) uint8 of the grid points `factor_indices` (N, 5) integers (a tensor or array).

    C is VARIANTS[variant]: 1 for "plain" and "noise", 3 for "colour". `seed` draws the nuisances of the
    colour and noise variants (each image's colour, the background noise); "plain" does not use it.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown shapes variant {variant!r} (known: {', '.join(VARIANTS)})")
    if size < MIN_SIZE:
        raise VaelabError(f"shapes: image size {size} is too small (at least {MIN_SIZE})")
    masks = _draw(_as_indices(factor_indices, "factor indices"), size)  # (N, S, S)
    rng = np.random.default_rng(seed)
    if variant == "colour":
        colour = np.array(COLOURS, dtype=np.uint8)[rng.integers(len(COLOURS), size=len(masks))]  # (N, 3)
        images = masks[:, None] * colour[:, :, None, None]  # (N, 3, S, S)
    elif variant == "noise":
        images = np.where(masks, np.uint8(255), rng.integers(0, 128, masks.shape, dtype=np.uint8))[:, None]
    else:
        images = masks[:, None].astype(np.uint8) * np.uint8(255)
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))


def split_indices(split: str) -> torch.Tensor:
    """The flat grid indices (SIZES[split],) int64 of a split: fixed, distinct, disjoint from the other split."""
    rng = np.random.default_rng(SPLIT_SEED)
    picks = rng.choice(GRID_SIZE, SIZES["train"] + SIZES["test"], replace=False)
    return torch.from_numpy(picks[: SIZES["train"]] if split == "train" else picks[SIZES["train"] :])


@functools.lru_cache(maxsize=8)
def load_shapes(split: str, size: int = DEFAULT_SIZE, variant: str = "plain", grayscale: bool = False) -> ImageSet:
    """The `split` of the shapes set at `size` x `size` (cached): images (N, C, size, size) uint8, labels = the
    shape, factors = the factor indices as float32 whole numbers with factor_sizes = FACTOR_SIZES. `grayscale`
    turns the colour variant into one grey channel (ITU-R 601 luma)."""
    if size < MIN_SIZE:
        raise VaelabError(f"shapes: image size {size} is too small (at least {MIN_SIZE})")
    factors = index_to_factors(split_indices(split))  # (N, 5) int64
    images = render_grid(factors, size, variant, seed=SEEDS[split])
    if grayscale and images.shape[1] == 3:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        images = (images.float() * luma).sum(1, keepdim=True).round().to(torch.uint8)
    return ImageSet(
        images=images,
        labels=factors[:, 0].clone(),
        class_names=CLASS_NAMES,
        factors=factors.float(),
        factor_names=FACTOR_NAMES,
        factor_sizes=FACTOR_SIZES,
    )

"""Latent-space arithmetic behind the pictures: grids, interpolation paths, PCA, the most active dims.

Shapes: `D` is the latent size, `T` the number of points on a path, `N` images.
"""

from __future__ import annotations

import torch


def quantile_grid(n: int, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """n latent values at evenly spaced quantiles of N(0, 1) (the inverse CDF, as seeds 002 and 003 do): (n,)."""
    return torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(low, high, n, dtype=torch.float64)).float()


def linear_grid(n: int, radius: float) -> torch.Tensor:
    """n evenly spaced values over [-radius, radius] (seed 004's manifold): (n,)."""
    return torch.linspace(-radius, radius, n)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line from a to b (each (D,)) at weights t (T,): (T, D)."""
    return a + t[:, None] * (b - a)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from a to b (each (D,)) at weights t (T,): (T, D).

    Follows the great circle between the two directions while the norm moves
    between |a| and |b| (Shoemake 1985; White 2016 for VAE latents), so the
    path stays where a Gaussian prior has its mass instead of cutting through
    the low-norm middle. Falls back to `lerp` for (anti)parallel vectors.
    """
    a64, b64, t64 = a.double(), b.double(), t.double()
    norms = a64.norm() * b64.norm()
    if norms == 0:
        return lerp(a, b, t)
    omega = torch.arccos((a64 @ b64 / norms).clamp(-1.0, 1.0))
    sin_omega = torch.sin(omega)
    if sin_omega < 1e-6:
        return lerp(a, b, t)
    wa = torch.sin((1 - t64) * omega) / sin_omega  # (T,)
    wb = torch.sin(t64 * omega) / sin_omega
    return (wa[:, None] * a64 + wb[:, None] * b64).to(a.dtype)


def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project points (N, D) on their first two principal components.

    Returns the projection (N, 2) and the fraction of the total variance each
    component explains (2,). Signs are fixed (largest loading positive) so the
    picture does not flip between runs.
    """
    x = x.double()
    centred = x - x.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (min(N, D), D)
    axes = vh[:2]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))  # (2, 1)
    axes = axes * signs
    variance = s**2
    ratio = variance[:2] / variance.sum().clamp_min(1e-300)
    return (centred @ axes.T).float(), ratio.float()


def rank_dims(kl_per_dim: torch.Tensor) -> list[int]:
    """Latent dims ordered from most to least used, by their mean KL(q || p) in nats: (D,) -> [dim, ...]."""
    return torch.argsort(kl_per_dim, descending=True, stable=True).tolist()

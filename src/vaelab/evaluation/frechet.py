"""The Fréchet distance between two sets of feature vectors, each summarised as a Gaussian.

    FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)

(Dowson & Landau 1982; the formula behind FID, Heusel et al. 2017). The
matrix square roots come from symmetric eigendecompositions in float64
(`torch.linalg.eigh`), so no scipy is needed: S_a^1/2 S_b S_a^1/2 is
symmetric positive semi-definite, and the trace of its square root is the
sum of the square roots of its eigenvalues.
"""

from __future__ import annotations

import torch


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F,) and covariance (F, F) of features (N, F), in float64 (unbiased, N - 1)."""
    f = features.double()
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / max(len(f) - 1, 1)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix (negative round-off eigenvalues clamped to 0)."""
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_from_stats(mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b)."""
    mu_a, cov_a, mu_b, cov_b = (t.double() for t in (mu_a, cov_a, mu_b, cov_b))
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return max(float(fd), 0.0)  # >= 0 in exact arithmetic; round-off can dip a hair below


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (N_a, F) and (N_b, F)."""
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            f"expected (N, F) feature sets of the same F, got {tuple(features_a.shape)} and {tuple(features_b.shape)}"
        )
    return frechet_from_stats(*gaussian_stats(features_a), *gaussian_stats(features_b))

"""The latent side of the model: the diagonal-Gaussian posterior and the standard-normal prior.

Shapes: `D` is the latent size; leading dims are batch (and, for several
samples per image, a sample dim in front).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import noise
from .registry import POSTERIORS, PRIORS

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class DiagGaussian:
    """N(mu, diag(exp(logvar))), parameterised by the log variance."""

    mu: torch.Tensor  # (B, D)
    logvar: torch.Tensor  # (B, D)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, n: int | None = None) -> torch.Tensor:
        """Reparameterised sample z = mu + sigma * eps: (B, D), or (n, B, D) when n is given."""
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        eps = noise.standard_normal(shape, batch_dim=-2, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + self.std * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z), summed over the latent dim: (..., B, D) -> (..., B)."""
        return -0.5 * ((z - self.mu) ** 2 * torch.exp(-self.logvar) + self.logvar + LOG_2PI).sum(-1)

    def kl_per_dim(self) -> torch.Tensor:
        """KL(q || N(0, I)) per latent dim, in closed form (Kingma & Welling 2014, app. B): (B, D)."""
        return 0.5 * (self.mu**2 + torch.exp(self.logvar) - 1.0 - self.logvar)


@POSTERIORS.register("diagonal-gaussian")
class DiagonalGaussianPosterior:
    """q(z|x): the encoder outputs (mu, log sigma^2) side by side."""

    def __init__(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim
        self.param_count = 2 * latent_dim

    def __call__(self, h: torch.Tensor) -> DiagGaussian:
        mu, logvar = h.float().chunk(2, dim=-1)  # (B, D) each; kept in fp32 for the loss
        return DiagGaussian(mu, logvar)


@PRIORS.register("standard-normal")
class StandardNormal:
    """p(z) = N(0, I)."""

    def __init__(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim

    def sample(
        self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=device, generator=generator)  # (n, D)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z**2 + LOG_2PI).sum(-1)

    def kl(self, q: DiagGaussian) -> torch.Tensor:
        """Analytic KL(q || p) summed over latent dims: (B,)."""
        return q.kl_per_dim().sum(-1)

    def kl_per_dim(self, q: DiagGaussian) -> torch.Tensor:
        """Analytic KL(q || p) per latent dim: (B, D) (free bits need it dim by dim)."""
        return q.kl_per_dim()

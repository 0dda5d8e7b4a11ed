"""The latent side of the model: diagonal Gaussians, the standard-normal prior, and the trace of a pass.

Shapes: `D` is a group's latent size; leading dims are batch (and, for several
samples per image, a sample dim in front). A group laid out on a feature map
(C, h, w) is kept flat here, (B, C*h*w); the network that made it reshapes.

Every consumer of latents (the objectives, the IWAE bound, the posterior
statistics, sampling) reads a `Trace`: for each latent group, top-down, its
posterior q_l = q(z_l | x, z_<l) (None when sampling from the prior), its
prior p_l = p(z_l | z_<l) and the z_l drawn; then the decoder's output. A
single-latent VAE's trace has one group (`SingleGroup` makes it); a
hierarchy's decoder makes one group per latent layer (`models/nets/hvae.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

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

    def draw(self, eps: torch.Tensor | None = None, k: int | None = None) -> torch.Tensor:
        """mu + sigma * eps with the given noise, or `rsample(k)` when there is none."""
        return self.rsample(k) if eps is None else self.mu + self.std * eps

    def repeat(self, k: int) -> DiagGaussian:
        """The same distribution for k samples per row: (B, D) -> (k*B, D), sample-major."""
        return DiagGaussian(self.mu.repeat(k, 1), self.logvar.repeat(k, 1))


def soft_clamp(x: torch.Tensor, bound: float) -> torch.Tensor:
    """bound * tanh(x / bound): x where |x| << bound, never beyond +-bound, smooth (NVAE, Vahdat & Kautz 2020,
    which bounds its log-scales so; a log-variance that runs off to -inf or +inf ends a run in NaNs)."""
    return bound * torch.tanh(x / bound)


@dataclass(frozen=True)
class GaussianPrior:
    """A conditional prior p(z_l | z_<l) = N(mu, diag(exp(logvar))) of a hierarchy's lower group."""

    dist: DiagGaussian

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(z)

    def kl_per_dim(self, q: DiagGaussian) -> torch.Tensor:
        """Analytic KL(q || p) per latent dim between two diagonal Gaussians: (B, D)."""
        p = self.dist
        return 0.5 * (p.logvar - q.logvar + (torch.exp(q.logvar) + (q.mu - p.mu) ** 2) * torch.exp(-p.logvar) - 1.0)

    def kl(self, q: DiagGaussian) -> torch.Tensor:
        return self.kl_per_dim(q).sum(-1)


@dataclass(frozen=True)
class Group:
    """One latent group of a pass: posterior `q` (None in a prior pass), prior `p`, the `z` drawn, and
    `shape`, the layout of one example's latents ((D,) for a vector, (C, h, w) for a feature map)."""

    q: DiagGaussian | None
    p: object  # StandardNormal or GaussianPrior: log_prob(z), kl(q), kl_per_dim(q)
    z: torch.Tensor
    shape: tuple[int, ...]

    def kl(self, analytic: bool = True) -> torch.Tensor:
        """KL(q || p) per example: analytic, or the single-sample estimate log q(z) - log p(z)."""
        return self.p.kl(self.q) if analytic else self.q.log_prob(self.z) - self.p.log_prob(self.z)

    def log_ratio(self) -> torch.Tensor:
        """log p(z) - log q(z): this group's part of an importance weight."""
        return self.p.log_prob(self.z) - self.q.log_prob(self.z)


@dataclass(frozen=True)
class Trace:
    """A pass through the latents: `groups`, top-down, and `out`, the decoder's output (the likelihood's
    parameters). With k samples per image every tensor has a sample dim in front: (k, B, ...)."""

    groups: tuple[Group, ...]
    out: torch.Tensor


Decode = Callable[[torch.Tensor], torch.Tensor]


class SingleGroup:
    """The one-group case of the top-down pass: q from the encoder's output, p the prior, out = decoder(z).

    Not a module: it composes the VAE's own posterior, prior and decoder, so a
    single-latent VAE's parameters and terms are exactly those it always had.
    """

    def __init__(self, posterior, prior, decoder: nn.Module) -> None:
        self.posterior, self.prior, self.decoder = posterior, prior, decoder

    @property
    def group_shapes(self) -> tuple[tuple[int, ...], ...]:
        return ((self.prior.latent_dim,),)

    def top_posterior(self, h: torch.Tensor) -> DiagGaussian:
        return self.posterior(h)

    def posterior_pass(
        self,
        h: torch.Tensor,
        *,
        k: int | None = None,
        eps: Sequence[torch.Tensor] | None = None,
        mean: bool = False,
        decode: Decode | None = None,
    ) -> Trace:
        """The trace for the encoder's output `h`: z = mu (`mean`), mu + sigma * eps[0], or drawn (k per row).
        `decode` replaces the decoder network (the same values, computed another way)."""
        q = self.posterior(h)
        z = q.mu if mean else q.draw(None if eps is None else eps[0], k)
        return Trace((Group(q, self.prior, z, (self.prior.latent_dim,)),), _decoded(decode or self.decoder, z))

    @property
    def top_prior(self):
        return self.prior

    def prior_pass(
        self,
        z_top: torch.Tensor | Sequence[torch.Tensor],
        temperatures: Sequence[float] = (),
        generator: torch.Generator | None = None,
    ) -> Trace:
        """The trace from latents z (n, D) (or a list holding them) already drawn; there are no lower groups, so
        `temperatures` and `generator` have nothing to do."""
        z = z_top if isinstance(z_top, torch.Tensor) else z_top[0]
        return Trace((Group(None, self.prior, z, (self.prior.latent_dim,)),), self.decoder(z))

    def conditional_pass(
        self, h: torch.Tensor, keep: int, temperatures: Sequence[float] = (), generator: torch.Generator | None = None
    ) -> Trace:
        """The trace that keeps the top `keep` (here: the one) group at its posterior mean: x's reconstruction."""
        return self.posterior_pass(h, mean=True)


def _decoded(decode: Decode, z: torch.Tensor) -> torch.Tensor:
    """decode(z) for z (B, D), or (k, B, D) through one pass of k*B rows."""
    if z.dim() == 2:
        return decode(z)
    return decode(z.flatten(0, 1)).unflatten(0, z.shape[:2])


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

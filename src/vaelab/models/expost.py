"""Ex-post density estimation (Ghosh et al. 2020, "From variational to deterministic autoencoders", sec. 4):
a full-covariance Gaussian fitted to the posterior means of the top latent groups of training images, to draw
the top groups from when sampling instead of their priors; the groups below still come from their priors.

A hierarchy's top groups, drawn from their priors, combine into layouts no image has (the prior's "holes");
their posterior means on real images do not. The Gaussian is a sampler fitted after training: it changes the
samples, not the model, so the likelihood figures (ELBO, IWAE, bits/dim) stay those of the trained priors.
`vaelab sample --expost-levels L` and `vaelab evaluate --expost-levels L` fit one on the run's training images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import checks
from ..errors import VaelabError

FIT_BATCH = 500  # images encoded at once while fitting
EXPOST_N = 20_000  # training images fitted by default (CIFAR-10's top 3 levels, 2,592 dims: 32 s on 2 CPU cores)
JITTER = 1e-4  # added to the covariance's diagonal: a dim that never varies still has a Cholesky factor


@dataclass(frozen=True)
class ExPostGaussian:
    """N(mean, L L^T) over the top `groups` latent groups side by side (group 1's dims first)."""

    groups: int
    sizes: tuple[int, ...]  # each of those groups' dims
    mean: torch.Tensor  # (D,)
    scale_tril: torch.Tensor  # (D, D), lower triangular
    n: int  # the images it was fitted on

    def draw(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """n draws, the noise scaled by `temperature` and drawn from `generator` (CPU), split into the top
        groups' latents: one (n, D_l) tensor per group, top first, on the CPU."""
        eps = torch.randn(n, len(self.mean), generator=generator)
        z = self.mean + temperature * eps @ self.scale_tril.T
        return list(z.split(list(self.sizes), dim=1))


def fit_expost(model, images: torch.Tensor, levels: int, *, batch_size: int = FIT_BATCH) -> ExPostGaussian:
    """The Gaussian of the posterior means of the top groups down to `levels` resolutions (`VAE.levels`; a
    single latent has one level) over `images` (uint8 or [0, 1], (N, C, H, W)). The moments are summed batch by
    batch in float64, so the memory it takes is that of two D x D matrices (D: the groups' dims), not the
    codes of every image."""
    available = model.levels
    checks.whole("expost levels", levels, low=1, high=len(available))
    groups = available[levels - 1]
    sizes = tuple(math.prod(shape) for shape in model.group_shapes[:groups])
    dims = sum(sizes)
    if len(images) <= dims:  # fewer images than dims: a covariance of less than full rank
        raise VaelabError(
            f"fitting a Gaussian to {dims:,} latent dims needs more than {dims:,} images, got {len(images):,}: "
            "fit fewer levels"
        )
    checks.memory(f"a Gaussian over {dims:,} latent dims", 3 * dims * dims * 8)  # the sums, the covariance, L
    total = torch.zeros(dims, dtype=torch.float64)
    products = torch.zeros(dims, dims, dtype=torch.float64)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            trace = model.trace(images[start : start + batch_size].to(model.device), mean=True)
            z = torch.cat([g.z.double().cpu() for g in trace.groups[:groups]], dim=1)
            total += z.sum(0)
            products.addmm_(z.T, z)
    n = len(images)
    mean = total / n
    cov = products.addr_(mean, mean, alpha=-n).div_(n - 1)  # in place: the unbiased covariance, as torch.cov
    cov.diagonal().add_(JITTER)
    scale_tril = torch.linalg.cholesky(cov)
    return ExPostGaussian(groups, sizes, mean.float(), scale_tril.float(), n)

"""A linear Gaussian VAE, whose exact log p(x) is known: the IWAE estimate must converge to it."""

from __future__ import annotations

import math

import torch
from torch import nn

from vaelab.config import ObjectiveConfig
from vaelab.evaluation.iwae import iwae_bound
from vaelab.models.latent import DiagonalGaussianPosterior, StandardNormal
from vaelab.models.likelihoods import Gaussian
from vaelab.models.objectives import ELBO
from vaelab.models.vae import VAE

D, X, SIGMA = 2, 6, 0.5  # latent size, pixels (as a 1x1x6 image), observation noise


def linear_gaussian():
    """x = W z + b + sigma * eps with z ~ N(0, I); the encoder is linear but deliberately not the exact posterior."""
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(X, D, generator=g), torch.randn(X, generator=g)
    decoder = nn.Sequential(nn.Linear(D, X), nn.Unflatten(1, (1, 1, X)))
    decoder[0].weight.data, decoder[0].bias.data = w.clone(), b.clone()
    # Exact posterior: N(A (x - b), S) with S = (I + W^T W / sigma^2)^-1, A = S W^T / sigma^2.
    s = torch.linalg.inv(torch.eye(D) + w.T @ w / SIGMA**2)
    a = s @ w.T / SIGMA**2
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(X, 2 * D))
    # Shrunk means, and an isotropic variance above S's largest eigenvalue: wrong, but it covers the
    # posterior (bounded importance weights), so the estimate converges without heavy tails.
    log_var = torch.log(torch.linalg.eigvalsh(s).max()) + 0.5
    encoder[1].weight.data = torch.cat([0.8 * a, torch.zeros(D, X)])
    encoder[1].bias.data = torch.cat([-0.8 * a @ b, log_var.expand(D)])
    model = VAE(
        encoder=encoder,
        decoder=decoder,
        posterior=DiagonalGaussianPosterior(D),
        prior=StandardNormal(D),
        likelihood=Gaussian(SIGMA, link="identity"),
        objective=ELBO(ObjectiveConfig()),
        image_shape=(1, 1, X),
        check_pixels=False,
    )  # real numbers, not pixels in [0, 1]
    exact = torch.distributions.MultivariateNormal(b, w @ w.T + SIGMA**2 * torch.eye(X))
    return model.eval(), exact


def test_iwae_converges_to_the_exact_log_likelihood():
    model, exact = linear_gaussian()
    torch.manual_seed(1)
    x = exact.sample((16,))  # (16, 6)
    log_px = exact.log_prob(x)  # (16,)
    images = x.view(16, 1, 1, X)
    torch.manual_seed(2)
    k5000 = iwae_bound(model, images, 5000, chunk=20_000)
    assert (k5000 - log_px).abs().max() < 0.1, k5000 - log_px
    torch.manual_seed(2)
    k1 = torch.stack([iwae_bound(model, images, 1) for _ in range(200)]).mean(0)  # = the ELBO, averaged
    gap = log_px - k1
    assert gap.mean() > 0.3 and (gap > 0).all(), gap  # the ELBO is visibly below log p(x)
    # and it agrees with the objective's own ELBO (analytic KL), averaged over draws
    elbo = torch.stack([model(images)["elbo"] for _ in range(200)]).mean(0)
    torch.testing.assert_close(k1.mean(), elbo.mean(), atol=0.1, rtol=0)


def test_the_bound_stays_below_log_px_on_average():
    model, exact = linear_gaussian()
    torch.manual_seed(3)
    x = exact.sample((8,))
    images = x.view(8, 1, 1, X)
    log_px = exact.log_prob(x)
    for k in (1, 10, 100):
        estimates = torch.stack([iwae_bound(model, images, k) for _ in range(100)])  # (100, 8)
        mean, stderr = estimates.mean(0), estimates.std(0) / math.sqrt(100)
        assert (mean <= log_px + 3 * stderr + 1e-3).all(), (k, mean - log_px)

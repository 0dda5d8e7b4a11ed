"""Active units, KL per dimension and reconstruction MSE on a model built so the answers are known."""

from __future__ import annotations

import torch
from torch import nn

from vaelab.config import ObjectiveConfig
from vaelab.evaluation.elbo import evaluate_elbo
from vaelab.evaluation.scores import elbo_per_image, elbo_terms_per_image, posterior_stats
from vaelab.models.latent import DiagGaussian, DiagonalGaussianPosterior, StandardNormal
from vaelab.models.likelihoods import Bernoulli
from vaelab.models.objectives import ELBO
from vaelab.models.vae import VAE

D, PIX = 4, 16  # latent dims; pixels of a 1x4x4 image


def half_collapsed_model() -> VAE:
    """mu_0 and mu_1 follow the image; mu_2 and mu_3 are constants (collapsed), with fixed log variances."""
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(PIX, 2 * D))
    w = torch.zeros(2 * D, PIX)
    w[0, :8], w[1, 8:] = 1.0, -1.0  # mu_0 = sum of the top half, mu_1 = -sum of the bottom half
    encoder[1].weight.data = w
    encoder[1].bias.data = torch.tensor([0.0, 0.0, 0.3, -0.2, -1.0, -0.5, 0.0, 0.2])  # mu_2,3 const; logvars
    decoder = nn.Sequential(nn.Linear(D, PIX), nn.Unflatten(1, (1, 4, 4)))
    torch.manual_seed(0)
    nn.init.normal_(decoder[0].weight, std=0.3)
    return VAE(
        encoder=encoder,
        decoder=decoder,
        posterior=DiagonalGaussianPosterior(D),
        prior=StandardNormal(D),
        likelihood=Bernoulli(),
        objective=ELBO(ObjectiveConfig()),
        image_shape=(1, 4, 4),
    ).eval()


def images(n: int = 200) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(n, 1, 4, 4, generator=g) > 0.5).to(torch.uint8) * 255


def test_active_units_and_kl_per_dim():
    model, x = half_collapsed_model(), images()
    stats = posterior_stats(model, x, batch_size=64)
    assert stats.mu.shape == (200, D) and stats.kl_per_dim.shape == (D,) and stats.recon_mse.shape == (200,)
    assert stats.active_units() == 2  # only the two dims that read the image vary over the data
    assert stats.mu[:, 2:].var(0).max() < 1e-12
    q = DiagGaussian(stats.mu, torch.tensor([-1.0, -0.5, 0.0, 0.2]).expand(200, D))
    torch.testing.assert_close(stats.kl_per_dim, q.kl_per_dim().mean(0))
    # collapsed dims: KL is the closed form of a constant posterior N(c, e^v) against N(0, 1)
    for d, (c, v) in {2: (0.3, 0.0), 3: (-0.2, 0.2)}.items():
        expected = 0.5 * (c**2 + torch.exp(torch.tensor(v)) - 1 - v)
        torch.testing.assert_close(stats.kl_per_dim[d], expected.float())


def test_threshold_is_a_variance_of_the_means():
    stats = posterior_stats(half_collapsed_model(), images(), batch_size=50)
    variances = stats.mu.double().var(0, correction=0)
    assert stats.active_units(threshold=float(variances.max()) + 1) == 0
    assert stats.active_units(threshold=0.0) == 2


def test_recon_mse_is_the_mean_image_error():
    model, x = half_collapsed_model(), images(10)
    stats = posterior_stats(model, x)
    xf = x.float() / 255
    expected = (model.decode(model.encode(xf).mu) - xf).pow(2).mean((1, 2, 3))
    torch.testing.assert_close(stats.recon_mse, expected)


def test_per_image_elbo_matches_the_training_evaluation():
    model, x = half_collapsed_model(), images(100)
    terms = elbo_terms_per_image(model, x, batch_size=32, seed=4)
    assert all(t.shape == (100,) for t in terms.values())
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    mean = evaluate_elbo(model, x, batch_size=32, seed=4)  # same seed and batches: the same draws
    torch.testing.assert_close(terms["elbo"].double().mean().item(), mean["elbo"], rtol=0, atol=1e-4)
    torch.testing.assert_close(elbo_per_image(model, x, batch_size=32, seed=4), terms["elbo"])


def test_dynamic_binarisation_is_one_seeded_draw_shared_by_all_scores():
    model = half_collapsed_model()
    grey = (torch.rand(50, 1, 4, 4, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    a = elbo_per_image(model, grey, seed=7, dynamic_binarize=True)
    b = elbo_per_image(model, grey, seed=7, dynamic_binarize=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, elbo_per_image(model, grey, seed=8, dynamic_binarize=True))

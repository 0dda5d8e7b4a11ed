"""KL, log densities and likelihoods against torch.distributions."""

import math

import torch
from torch.distributions import Bernoulli as TBernoulli
from torch.distributions import Independent, Normal, kl_divergence

from vaelab.config import ObjectiveConfig
from vaelab.models.latent import DiagGaussian, SingleGroup, StandardNormal
from vaelab.models.likelihoods import Bernoulli, Gaussian
from vaelab.models.objectives import ELBO


def _q(b=6, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DiagGaussian(torch.randn(b, d, generator=g) * 2, torch.randn(b, d, generator=g))


def _torch_q(q):
    return Independent(Normal(q.mu, q.std), 1)


def _torch_p(d):
    return Independent(Normal(torch.zeros(d), torch.ones(d)), 1)


def test_analytic_kl_matches_torch_distributions():
    q = _q()
    expected = kl_divergence(_torch_q(q), _torch_p(4))
    torch.testing.assert_close(StandardNormal(4).kl(q), expected)


def test_log_probs_match_torch_distributions():
    q = _q()
    z = torch.randn(3, 6, 4)  # (S, B, D): broadcasts over a sample dim
    torch.testing.assert_close(q.log_prob(z), _torch_q(q).log_prob(z))
    torch.testing.assert_close(StandardNormal(4).log_prob(z), _torch_p(4).log_prob(z))


def test_monte_carlo_kl_agrees_in_expectation():
    torch.manual_seed(0)
    q = _q(b=3, d=2)
    z = q.rsample(200_000)  # (S, B, D)
    mc = q.log_prob(z) - StandardNormal(2).log_prob(z)  # (S, B)
    analytic = StandardNormal(2).kl(q)
    stderr = mc.std(0) / math.sqrt(mc.shape[0])
    assert ((mc.mean(0) - analytic).abs() < 4 * stderr + 1e-3).all()


def test_rsample_has_the_posterior_moments():
    torch.manual_seed(1)
    q = _q(b=2, d=3)
    z = q.rsample(100_000)
    torch.testing.assert_close(z.mean(0), q.mu, atol=0.05, rtol=0.02)
    torch.testing.assert_close(z.std(0), q.std, atol=0.05, rtol=0.02)


def test_bernoulli_log_prob_matches_torch():
    logits = torch.randn(4, 1, 5, 5) * 3
    x = torch.bernoulli(torch.full((4, 1, 5, 5), 0.5))
    expected = TBernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(Bernoulli().log_prob(logits, x), expected)


def test_bernoulli_is_stable_for_extreme_logits():
    logits = torch.tensor([-200.0, 200.0]).reshape(1, 1, 1, 2)
    x = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2)
    assert Bernoulli().log_prob(logits, x).abs().item() < 1e-6


def test_gaussian_log_prob_matches_torch():
    out = torch.randn(4, 3, 5, 5)
    x = torch.rand(4, 3, 5, 5)
    for sigma in (1.0, 0.1):
        expected = Normal(torch.sigmoid(out), sigma).log_prob(x).sum((1, 2, 3))
        torch.testing.assert_close(Gaussian(sigma=sigma).log_prob(out, x), expected)


def test_likelihood_log_prob_broadcasts_over_samples():
    out = torch.randn(7, 4, 1, 3, 3)  # (S, B, C, H, W)
    x = torch.rand(4, 1, 3, 3)
    assert Bernoulli().log_prob(out, x).shape == (7, 4)
    assert Gaussian().log_prob(out, x).shape == (7, 4)


def test_likelihood_samples():
    torch.manual_seed(0)
    out = torch.zeros(20_000, 1, 1, 1)
    b = Bernoulli().sample(out)
    assert set(b.unique().tolist()) <= {0.0, 1.0} and abs(b.mean().item() - 0.5) < 0.02
    g = Gaussian(sigma=0.5).sample(out)
    assert abs(g.mean().item() - 0.5) < 0.02 and abs(g.std().item() - 0.5) < 0.02


class _Linear(torch.nn.Module):
    """A model with a fixed posterior, to check the objective's bookkeeping."""

    def __init__(self, q):
        super().__init__()
        self.q, self.prior, self.likelihood = q, StandardNormal(q.mu.shape[1]), Bernoulli()
        self.decoder = lambda z: torch.zeros(z.shape[0], 1, 2, 2)

    def encode(self, x):
        return self.q

    def trace(self, x, **kwargs):
        return SingleGroup(lambda h: self.q, self.prior, self.decoder).posterior_pass(None, **kwargs)


def test_elbo_terms_and_beta():
    q = _q(b=5, d=3)
    x = torch.bernoulli(torch.full((5, 1, 2, 2), 0.5))
    torch.manual_seed(0)
    t = ELBO(ObjectiveConfig(kl="analytic", beta=0.25))(_Linear(q), x)
    torch.testing.assert_close(t["recon"], torch.full((5,), 4 * math.log(2)))  # logits 0: log 2 per pixel
    torch.testing.assert_close(t["kl"], StandardNormal(3).kl(q))
    torch.testing.assert_close(t["elbo"], -(t["recon"] + t["kl"]))
    torch.testing.assert_close(t["loss"], t["recon"] + 0.25 * t["kl"])
    assert (t["elbo"] < 0).all()


def test_mc_elbo_uses_sampled_kl():
    q = _q(b=5, d=3)
    x = torch.zeros(5, 1, 2, 2)
    torch.manual_seed(3)
    t = ELBO(ObjectiveConfig(kl="mc"))(_Linear(q), x)
    torch.manual_seed(3)
    z = q.rsample()
    torch.testing.assert_close(t["kl"], q.log_prob(z) - StandardNormal(3).log_prob(z))

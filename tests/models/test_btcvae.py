"""β-TCVAE: the batch estimates of MI, TC and dimension-wise KL against closed forms, the exact per-batch identity
with the single-sample KL, the terms' shapes, and what it refuses."""

from __future__ import annotations

import math

import pytest
import torch

from vaelab.config import ModelConfig, ObjectiveConfig, RunConfig
from vaelab.errors import VaelabError
from vaelab.models.latent import DiagGaussian
from vaelab.models.objectives import tc_decomposition
from vaelab.models.vae import build_model

SHAPE = (1, 28, 28)


def _gaussian_aggregate(m: int, sigma: float, cov: torch.Tensor, seed: int = 0):
    """Posteriors q(z|x_j) = N(mu_j, sigma^2 I) with mu_j ~ N(0, cov), and z_j ~ q(z|x_j): the aggregate
    posterior of these M images is, in expectation, N(0, cov + sigma^2 I)."""
    g = torch.Generator().manual_seed(seed)
    d = cov.shape[0]
    mu = torch.randn(m, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    logvar = torch.full_like(mu, 2 * math.log(sigma))
    z = mu + sigma * torch.randn(m, d, generator=g, dtype=torch.float64)
    log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    return DiagGaussian(mu, logvar), z, log_pz


def test_the_mss_estimates_agree_with_the_closed_forms_of_a_correlated_gaussian():
    """q(z) = N(0, S) with S = cov + sigma^2 I: TC = 1/2 (sum_d log S_dd - log det S), MI = 1/2 log(det S /
    sigma^(2D)), dimension-wise KL = sum_d KL(N(0, S_dd) || N(0, 1)). Each batch is a whole data set (N = M),
    so MSS weighs every image 1/M: a kernel estimate of q(z). Means over 8 batches of M = 2000; over 24 such
    batches the estimates' bias and spread (of an 8-batch mean) were, in nats: TC +0.004 and 0.006, MI -0.022
    and 0.011, DWKL +0.002 and 0.003; the tolerances are about 4 spreads beyond the bias."""
    cov = torch.tensor([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]], dtype=torch.float64)
    sigma, m = 0.5, 2000
    s = cov + sigma**2 * torch.eye(3, dtype=torch.float64)
    variances = torch.diagonal(s)
    tc = 0.5 * (variances.log().sum() - torch.logdet(s)).item()
    mi = 0.5 * (torch.logdet(s) - 3 * math.log(sigma**2)).item()
    dwkl = 0.5 * (variances - 1 - variances.log()).sum().item()
    estimates = {"mi": 0.0, "tc": 0.0, "dwkl": 0.0}
    for seed in range(8):
        q, z, log_pz = _gaussian_aggregate(m, sigma, cov, seed)
        for name, value in tc_decomposition(q, z, log_pz, dataset_size=m, estimator="mss").items():
            estimates[name] += value.mean().item() / 8
    assert tc > 0.3  # far from independent: the test can tell
    assert estimates["tc"] == pytest.approx(tc, abs=0.03)
    assert estimates["mi"] == pytest.approx(mi, abs=0.07)
    assert estimates["dwkl"] == pytest.approx(dwkl, abs=0.02)


def test_an_independent_aggregate_has_no_total_correlation():
    q, z, log_pz = _gaussian_aggregate(2000, 0.5, torch.eye(3, dtype=torch.float64), seed=1)
    assert tc_decomposition(q, z, log_pz, dataset_size=2000)["tc"].mean().item() == pytest.approx(0.0, abs=0.06)


def test_mws_differs_from_mss_by_a_constant_on_a_batch_of_the_whole_data_set():
    """Over the whole data set MSS's weights are all 1/N and MWS's all 1/N^2: MWS's log q is log N lower in
    every row, so its TC is (D - 1) log N higher, exactly (and its MI log N higher, its DWKL D log N lower)."""
    n, d = 64, 3
    q, z, log_pz = _gaussian_aggregate(n, 0.5, torch.eye(d, dtype=torch.float64))
    mss = tc_decomposition(q, z, log_pz, n, "mss")
    mws = tc_decomposition(q, z, log_pz, n, "mws")
    torch.testing.assert_close(mws["tc"], mss["tc"] + (d - 1) * math.log(n))
    torch.testing.assert_close(mws["mi"], mss["mi"] + math.log(n))
    torch.testing.assert_close(mws["dwkl"], mss["dwkl"] - d * math.log(n))


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_mi_tc_and_dwkl_add_up_to_the_single_sample_kl_of_every_example(estimator):
    """The identity that holds exactly on every batch, whatever the estimate of q(z):
    mi + tc + dwkl = log q(z|x) - log p(z)."""
    g = torch.Generator().manual_seed(3)
    q = DiagGaussian(torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g))
    z = q.mu + q.std * torch.randn(16, 5, generator=g)
    log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    parts = tc_decomposition(q, z, log_pz, dataset_size=1000, estimator=estimator)
    torch.testing.assert_close(parts["mi"] + parts["tc"] + parts["dwkl"], q.log_prob(z) - log_pz)


def _model(**objective) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder="mlp2", decoder="mlp2", latent_dim=4), ObjectiveConfig(**objective), SHAPE)
    attach = getattr(model.objective, "attach", None)
    if attach is not None:
        attach(model, 60000)
    return model


def test_with_unit_weights_the_loss_is_the_single_sample_negative_elbo():
    x = torch.rand(8, *SHAPE, generator=torch.Generator().manual_seed(0))
    btc = _model(name="btcvae", kl="mc")
    elbo = _model(name="elbo", kl="mc")
    torch.manual_seed(1)
    a = btc(x)
    torch.manual_seed(1)
    b = elbo(x)
    torch.testing.assert_close(a["loss"], -a["elbo"])  # kl = "mc": the same log q(z|x) - log p(z)
    torch.testing.assert_close(a["loss"], b["loss"])


def test_terms_are_per_example_and_the_elbo_stays_the_analytic_one():
    x = torch.rand(8, *SHAPE, generator=torch.Generator().manual_seed(0))
    model = _model(name="btcvae", tc_weight=6.0)
    torch.manual_seed(1)
    terms = model(x)
    assert set(terms) == {"loss", "elbo", "recon", "kl", "mi", "tc", "dwkl"}
    assert model.objective.extra_terms == ("mi", "tc", "dwkl")  # what the training loop sums and logs
    assert all(t.shape == (8,) and torch.isfinite(t).all() for t in terms.values())
    q = model.encode(x)
    torch.testing.assert_close(terms["kl"], q.kl_per_dim().sum(-1))
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["mi"] + 6 * terms["tc"] + terms["dwkl"])


def test_it_needs_the_training_set_size():
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder="mlp2", decoder="mlp2"), ObjectiveConfig(name="btcvae"), SHAPE)
    with pytest.raises(VaelabError, match="training set's size"):
        model(torch.rand(4, *SHAPE))


def test_it_refuses_a_hierarchy():
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(encoder="hvae", decoder="hvae", latent_dim=2, width=8, depth=1),
        ObjectiveConfig(name="btcvae"),
        (1, 16, 16),
    )
    assert len(model.group_shapes) > 1
    with pytest.raises(VaelabError, match="single latent group"):
        model.objective.attach(model, 100)
    model.objective.dataset_size = 100
    with pytest.raises(VaelabError, match="single latent group"):
        model(torch.rand(4, 1, 16, 16))


@pytest.mark.parametrize(
    "objective, match",
    [
        (dict(name="btcvae", beta=6.0), "tc_weight"),
        (dict(name="btcvae", kl_warmup_steps=10), "kl_warmup_steps"),
        (dict(name="elbo", tc_weight=6.0), "applies to the btcvae and factorvae objectives"),
        (dict(name="elbo", mi_weight=2.0), "applies to the btcvae objective"),
        (dict(name="iwae", tc_estimator="mws"), "applies to the btcvae objective"),
        (dict(name="btcvae", discriminator_width=10), "applies to the factorvae objective"),
        (dict(name="btcvae", tc_weight=-1.0), "tc_weight"),
        (dict(name="btcvae", dwkl_weight=float("nan")), "dwkl_weight"),
    ],
)
def test_settings_that_mean_nothing_are_refused(objective, match):
    with pytest.raises(VaelabError, match=match):
        RunConfig(objective=ObjectiveConfig(**objective))

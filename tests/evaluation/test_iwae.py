"""The IWAE bound: K=1 is the ELBO in expectation, it tightens with K, and chunking changes nothing."""

from __future__ import annotations

import math

import pytest
import torch

import vaelab
from vaelab.evaluation.iwae import iwae_bound, log_weights
from vaelab.evaluation.scores import elbo_per_image, iwae_per_image
from vaelab.training.data import load_split


@pytest.fixture(scope="module")
def model_and_images(mnist_run, data_root):
    model = vaelab.load(mnist_run)
    images = load_split(model.config.data, "test", data_root).images[:64]  # (64, 1, 28, 28) uint8
    return model, images


def test_k1_equals_the_elbo_in_expectation(model_and_images):
    model, images = model_and_images
    # 50 independent single-sample IWAE bounds per image against 50 single-z ELBOs (analytic KL):
    # both are unbiased estimates of the same ELBO.
    iwae1 = torch.stack([iwae_per_image(model, images, 1, seed=s) for s in range(50)])  # (50, 64)
    elbo = torch.stack([elbo_per_image(model, images, seed=s) for s in range(50)])  # (50, 64)
    diff = iwae1.double().mean() - elbo.double().mean()
    stderr = math.sqrt(iwae1.double().var() / iwae1.numel() + elbo.double().var() / elbo.numel())
    assert abs(diff) < 4 * stderr + 0.05, (float(diff), stderr)


def test_same_seed_same_z_k1_differs_from_elbo_only_by_the_kl_estimate(model_and_images):
    model, images = model_and_images
    x = images.float() / 255
    torch.manual_seed(3)
    lw = log_weights(model, x, 1)[0]  # log p(x|z) + log p(z) - log q(z|x)
    torch.manual_seed(3)
    q = model.encode(x)
    z = q.rsample()
    recon = model.likelihood.log_prob(model.decoder(z), x)
    torch.testing.assert_close(lw, recon + model.prior.log_prob(z) - q.log_prob(z))


def test_bound_tightens_with_k_and_beats_the_elbo(model_and_images):
    model, images = model_and_images
    means = {k: float(iwae_per_image(model, images, k, seed=1).double().mean()) for k in (1, 10, 100)}
    assert means[1] <= means[10] + 0.1 and means[10] <= means[100] + 0.1, means
    elbo = float(elbo_per_image(model, images, seed=1).double().mean())
    assert -means[100] <= -elbo, (means, elbo)  # the IWAE NLL is below -ELBO


@pytest.mark.parametrize("small", [1, 5, 7, 64, 130])
def test_chunk_changes_memory_not_values(model_and_images, small):
    model, images = model_and_images
    x = images[:20].float() / 255
    torch.manual_seed(0)
    big = log_weights(model, x, 13, chunk=1_000_000)
    torch.manual_seed(0)
    chunked = log_weights(model, x, 13, chunk=small)
    assert big.shape == chunked.shape == (13, 20)
    torch.testing.assert_close(chunked, big, rtol=1e-5, atol=1e-4)


def test_per_image_scores_are_deterministic_and_batched(model_and_images):
    model, images = model_and_images
    a = iwae_per_image(model, images, 8, chunk=50, batch_size=10, seed=5)
    b = iwae_per_image(model, images, 8, chunk=5000, batch_size=10, seed=5)
    assert a.shape == (64,) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    rng_before = torch.get_rng_state()
    iwae_per_image(model, images[:4], 3, seed=5)
    assert torch.equal(rng_before, torch.get_rng_state())  # the caller's random stream is untouched


def test_iwae_bound_shape(model_and_images):
    model, images = model_and_images
    assert iwae_bound(model, images[:3].float() / 255, 4).shape == (3,)
    with pytest.raises(ValueError):
        log_weights(model, images[:3].float() / 255, 0)

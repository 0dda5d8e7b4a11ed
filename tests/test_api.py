"""The Python API, including a custom encoder/decoder registered by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vaelab
from vaelab.models.registry import DECODERS, ENCODERS

SMALL = dict(
    dataset="shapes",
    image_size=32,
    limit=64,
    val_size=32,
    epochs=1,
    batch_size=32,
    progress=False,
    log=lambda line: None,
)


@pytest.fixture
def tiny_parts():
    @vaelab.register_encoder("test-tiny")
    def encoder(image_shape, out_features):
        c, h, w = image_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.ReLU(), nn.Linear(16, out_features))

    @vaelab.register_decoder("test-tiny")
    def decoder(image_shape, latent_dim, out_channels):
        _, h, w = image_shape
        return nn.Sequential(
            nn.Linear(latent_dim, 16),
            nn.ReLU(),
            nn.Linear(16, out_channels * h * w),
            nn.Unflatten(1, (out_channels, h, w)),
        )

    yield
    ENCODERS._items.pop("test-tiny")
    DECODERS._items.pop("test-tiny")


def test_train_load_sample_encode(tmp_path, tiny_parts):
    run = vaelab.train("mlp2", out=tmp_path / "run", encoder="test-tiny", decoder="test-tiny", latent_dim=3, **SMALL)
    assert run.config.model.encoder == "test-tiny" and len(run.metrics) == 1
    model = vaelab.load(run.path)
    assert isinstance(model, vaelab.VAE) and model.latent_dim == 3
    images = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 32, 32)
    again = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, again)
    q = model.encode(images)
    assert q.mu.shape == (5, 3)
    assert model.decode(q.mu).shape == (5, 1, 32, 32)
    terms = model(images)
    assert terms["elbo"].shape == (5,)
    result = vaelab.evaluate(run.path, limit=10)
    assert result["n"] == 10 and result["elbo"] < 0


def test_temperature_scales_the_prior_noise(tmp_path, tiny_parts):
    run = vaelab.train("mlp2", out=tmp_path / "run", encoder="test-tiny", decoder="test-tiny", **SMALL)
    model = run.model
    z = model.prior.sample(4, generator=torch.Generator().manual_seed(1))
    cold = model.sample(4, temperature=0.5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(cold, model.decode(0.5 * z))


def test_unknown_override_name():
    with pytest.raises(vaelab.VaelabError, match="unknown setting 'epoch'"):
        vaelab.train("mlp2", epoch=3)


def test_unregistered_part_is_named():
    with pytest.raises(vaelab.VaelabError, match="unknown encoder 'nobody'"):
        vaelab.train("mlp2", encoder="nobody", **SMALL)

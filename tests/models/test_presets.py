"""Every seed preset builds with the seed's exact parameter count, and its shapes line up."""

import pytest
import torch

from vaelab.models import build_model, count_parameters
from vaelab.presets import PRESETS

# The seeds' own summaries (mlp2, keras-conv2) and their layer lists (the others).
EXPECTED_PARAMS = {"mlp2": 404_244, "keras-conv2": 550_629, "cvae2": 69_989, "conv16": 228_193, "cifar128": 8_155_075}
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def build(name):
    cfg = PRESETS[name].config
    shape = SHAPES[cfg.data.name]
    return build_model(cfg.model, cfg.objective, shape), shape


def test_all_seed_presets_are_registered():
    assert set(EXPECTED_PARAMS) <= set(PRESETS.names())


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_count_matches_seed(name):
    model, _ = build(name)
    assert count_parameters(model) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_shapes(name):
    model, shape = build(name)
    d = PRESETS[name].config.model.latent_dim
    x = torch.rand(5, *shape)
    q = model.encode(x)
    assert q.mu.shape == q.logvar.shape == (5, d)
    assert model.decoder(q.mu).shape == (5, *shape)
    terms = model(x)
    assert set(terms) == {"loss", "elbo", "recon", "kl"}
    for value in terms.values():
        assert value.shape == (5,) and torch.isfinite(value).all()
    model.eval()
    images = model.sample(3)
    assert images.shape == (3, *shape) and images.min() >= 0 and images.max() <= 1
    assert model.reconstruct(x).shape == (5, *shape)


def test_uint8_input_is_scaled():
    model, shape = build("mlp2")
    x = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
    torch.testing.assert_close(model.encode(x).mu, model.encode(x.float() / 255).mu)


def test_decoder_with_unsuitable_size_says_so():
    from vaelab.errors import VaelabError

    cfg = PRESETS["cvae2"].config
    with pytest.raises(VaelabError, match="divisible by 4"):
        build_model(cfg.model, cfg.objective, (1, 30, 30))

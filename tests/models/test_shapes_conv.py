"""`shapes-conv`, the disentanglement studies' network: Locatello et al. 2019's layer list, layer for layer."""

import pytest
import torch

from vaelab.errors import VaelabError
from vaelab.models import build_model, count_parameters
from vaelab.presets import PRESETS


def _conv(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def _dense(n_in, n_out):
    return n_in * n_out + n_out


# disentanglement_lib's conv_encoder and deconv_decoder at 64 px, 1 channel, 10 latent dims
ENCODER = _conv(1, 32, 4) + _conv(32, 32, 4) + _conv(32, 64, 2) + _conv(64, 64, 2) + _dense(1024, 256) + _dense(256, 20)
DECODER = _dense(10, 256) + _dense(256, 1024) + _conv(64, 64, 4) + _conv(64, 32, 4) + _conv(32, 32, 4) + _conv(32, 1, 4)


def _model(shape=(1, 64, 64)):
    cfg = PRESETS["shapes-vae"].config
    return build_model(cfg.model, cfg.objective, shape)


def test_parameter_count_is_the_papers_layer_list():
    model = _model()
    assert count_parameters(model.encoder) == ENCODER
    assert count_parameters(model.decoder) == DECODER
    assert count_parameters(model) == ENCODER + DECODER == 690_517


@pytest.mark.parametrize("shape", [(1, 64, 64), (3, 64, 64), (1, 32, 32)])
def test_maps_halve_to_a_sixteenth_and_come_back(shape):
    model = _model(shape)
    x = (torch.rand(4, *shape) > 0.5).float()
    maps = model.encoder[:8](x)  # the four convolutions and their relus
    assert maps.shape == (4, 64, shape[1] // 16, shape[2] // 16)
    q = model.encode(x)
    assert q.mu.shape == (4, 10)
    assert model.decoder(q.mu).shape == (4, *shape)
    model.eval()
    assert model.sample(2).shape == (2, *shape)


def test_a_side_not_divisible_by_16_is_refused():
    with pytest.raises(VaelabError, match="shapes-conv.*16"):
        _model((1, 40, 40))

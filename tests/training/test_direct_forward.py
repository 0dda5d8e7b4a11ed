"""`direct.forward`: a network through its rules' forwards without autograd, the same values as calling it."""

import pytest
import torch

import vaelab
from vaelab.evaluation.iwae import log_weights
from vaelab.models import build_model
from vaelab.runtime import batch_memory_format, place
from vaelab.training import direct

SHAPES = {
    "cvae2": (1, 28, 28),
    "conv16": (1, 28, 28),
    "keras-conv2": (1, 28, 28),
    "mlp2": (1, 28, 28),
    "cifar128": (3, 32, 32),
}


def make(preset: str):
    cfg = vaelab.presets()[preset]
    torch.manual_seed(0)
    return place(build_model(cfg.model, cfg.objective, SHAPES[preset]), torch.device("cpu")).eval()


def inputs(model, n=16):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, *model.image_shape, generator=g).contiguous(memory_format=batch_memory_format(model))
    return x, torch.randn(n, model.latent_dim, generator=g)


@pytest.fixture
def relu_calls(monkeypatch):
    """How often an `nn.ReLU` module ran: never when a network runs through its rules."""
    calls = []
    plain = torch.nn.ReLU.forward
    monkeypatch.setattr(torch.nn.ReLU, "forward", lambda self, x: calls.append(1) or plain(self, x))
    return calls


@pytest.mark.parametrize("preset", ["cvae2", "conv16", "keras-conv2", "mlp2"])
def test_the_networks_give_their_own_values_through_the_rules(preset, relu_calls):
    model = make(preset)
    relu_calls.clear()  # build_model's shape check ran the networks once
    x, z = inputs(model)
    with torch.inference_mode():
        for net, v in ((model.encoder, x), (model.decoder, z)):
            out = direct.forward(net, v)
            assert relu_calls == []  # the rules ran, not the modules
            ref = net(v)
            assert relu_calls
            relu_calls.clear()
            # the fused convolution + ReLU is the same oneDNN kernel with the ReLU applied in its epilogue
            torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_the_network_itself_runs_without_rules_with_hooks_or_when_gradients_are_wanted(relu_calls):
    model = make("cifar128")  # BatchNorm has no rule
    _, z = inputs(model, 4)
    with torch.inference_mode():
        out = direct.forward(model.decoder, z)
        assert relu_calls
        torch.testing.assert_close(out, model.decoder(z), rtol=0, atol=0)

    model = make("cvae2")
    _, z = inputs(model, 4)
    calls = []
    handle = model.decoder[0].register_forward_hook(lambda m, i, out: calls.append(1))
    with torch.inference_mode():
        direct.forward(model.decoder, z)
    assert calls == [1]  # the hook ran: the network was called
    handle.remove()
    with torch.inference_mode():
        direct.forward(model.decoder, z)
    assert calls == [1]
    out = direct.forward(model.decoder, z)  # gradients wanted: autograd records the network's own calls
    assert out.grad_fn is not None


def test_a_replaced_layer_is_taken_up():
    model = make("cvae2")
    _, z = inputs(model, 4)
    with torch.inference_mode():
        direct.forward(model.decoder, z)
        model.decoder[0] = torch.nn.Linear(model.latent_dim, model.decoder[0].out_features)
        torch.testing.assert_close(direct.forward(model.decoder, z), model.decoder(z), rtol=1e-6, atol=1e-6)


def test_the_iwae_log_weights_are_those_of_the_plain_decoder(relu_calls):
    model = make("cvae2")
    relu_calls.clear()  # build_model's shape check ran the networks once
    x, _ = inputs(model, 8)
    x = torch.bernoulli(x, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(5)
    fast = log_weights(model, x, 20, chunk=64)
    # the encoder ran once as modules; the decoder's ReLUs went into its convolutions
    assert len(relu_calls) == sum(isinstance(m, torch.nn.ReLU) for m in model.encoder) > 0
    handle = model.decoder[1].register_forward_hook(lambda m, i, out: None)  # sends the decoder to net(x)
    torch.manual_seed(5)
    plain = log_weights(model, x, 20, chunk=64)
    handle.remove()
    torch.testing.assert_close(fast, plain, rtol=1e-6, atol=1e-4)

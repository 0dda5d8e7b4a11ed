"""The direct training step (no autograd) computes what autograd computes, and steps aside where it cannot."""

import dataclasses

import pytest
import torch
from torch import nn

import vaelab
from vaelab.models import build_model, noise
from vaelab.runtime import batch_memory_format, place
from vaelab.training import direct
from vaelab.training.direct import layers
from vaelab.training.direct.layers import rule_for
from vaelab.training.direct.step import Stack
from vaelab.training.optim import build_optimizer
from vaelab.training.step import train_step

SHAPE = (1, 28, 28)


def make(preset: str, **objective):
    cfg = vaelab.presets()[preset]
    torch.manual_seed(0)
    model = place(build_model(cfg.model, dataclasses.replace(cfg.objective, **objective), SHAPE), torch.device("cpu"))
    return model, build_optimizer(model.parameters(), cfg.train), cfg


def batch(model, cfg, n=8):
    x = torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(1))
    if cfg.data.binarize != "none":
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(2))
    return x.contiguous(memory_format=batch_memory_format(model))


def one_step(preset, precision, use_direct, **objective):
    model, opt, cfg = make(preset, **objective)
    x = batch(model, cfg)
    with noise.step_noise(torch.Generator(), 3, 0, slice(0, len(x)), len(x)):  # the same eps both ways
        terms, applied = train_step(model, opt, x, precision=precision, direct=use_direct)
    assert applied
    return model, terms, {n: p.grad.clone() for n, p in model.named_parameters()}


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


# cvae2, keras-conv2 and mlp2 are Bernoulli models, conv16 a Gaussian one (sigmoid mean)
@pytest.mark.parametrize("preset", ["cvae2", "conv16", "keras-conv2", "mlp2"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("kl", ["analytic", "sampled"])
def test_gradients_and_terms_match_autograd(preset, precision, kl):
    model, terms, grads = one_step(preset, precision, True, kl=kl, beta=0.7)
    assert direct.direct_step(model) is not None
    _, ref_terms, ref_grads = one_step(preset, precision, False, kl=kl, beta=0.7)
    for k in ("loss", "elbo", "recon", "kl"):
        torch.testing.assert_close(terms[k], ref_terms[k], rtol=1e-6, atol=1e-4)
    # the same kernels on the same operands: float rounding apart (bf16 gradients came out bit-identical,
    # but for a strided convolution's weight gradient as a product of patches: up to 1e-5 apart)
    tolerance = 1e-5 if precision == "fp32" else 1e-3
    for name, ref in ref_grads.items():
        assert rel_err(grads[name], ref) < tolerance, name
        assert grads[name].dtype == torch.float32


def test_training_steps_follow_autograd():
    runs = []
    for use_direct in (True, False):
        model, opt, cfg = make("cvae2")
        x = batch(model, cfg, 16)
        for step in range(4):
            with noise.step_noise(torch.Generator(), 0, step, slice(0, 16), 16):
                train_step(model, opt, x, direct=use_direct)
        runs.append(list(model.parameters()))
    for p, q in zip(*runs):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_uint8_images_are_read_as_the_floats_they_stand_for():
    model, opt, cfg = make("cvae2")
    step = direct.direct_step(model)
    x = (batch(model, cfg) * 255).to(torch.uint8)
    with noise.step_noise(torch.Generator(), 0, 0, slice(0, 8), 8):
        from_bytes = step(model, x, torch.float32, 1 / 8)
    with noise.step_noise(torch.Generator(), 0, 0, slice(0, 8), 8):
        from_floats = step(model, x.float() / 255, torch.float32, 1 / 8)
    torch.testing.assert_close(from_bytes["loss"], from_floats["loss"])


def test_models_with_layers_or_parts_it_has_no_rules_for_take_autograd():
    cfg = vaelab.presets()["cifar128"]
    assert direct.direct_step(build_model(cfg.model, cfg.objective, (3, 32, 32))) is None  # BatchNorm
    assert Stack.build(nn.Sequential(nn.Linear(4, 4), nn.LeakyReLU())) is None
    assert rule_for(nn.Conv2d(1, 1, 3, padding="same")) is None
    assert rule_for(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")) is None
    assert rule_for(type("MyLinear", (nn.Linear,), {})(2, 2)) is None  # a subclass may compute something else
    model, _, _ = make("cvae2")
    model.likelihood = object()
    assert direct.direct_step(model) is None


def test_hooks_frozen_weights_and_patched_methods_send_the_step_to_autograd(monkeypatch):
    model, opt, cfg = make("cvae2")
    assert direct.direct_step(model) is not None
    handle = model.decoder[0].register_forward_hook(lambda m, i, out: None)
    assert direct.direct_step(model) is None
    handle.remove()
    assert direct.direct_step(model) is not None
    model.encoder[0].weight.requires_grad_(False)
    assert direct.direct_step(model) is None
    model.encoder[0].weight.requires_grad_(True)
    monkeypatch.setattr(vaelab.VAE, "forward", lambda self, x: {})
    assert direct.direct_step(model) is None


def test_a_replaced_layer_gets_a_new_step():
    model, opt, cfg = make("mlp2")
    first = direct.direct_step(model)
    model.decoder[0] = nn.Linear(2, 256)
    second = direct.direct_step(model)
    assert second is not None and second is not first
    assert any(p is model.decoder[0].weight for p in second.params)


def test_vaelab_train_takes_the_direct_step(tmp_path, monkeypatch):
    calls = []
    real = direct.DirectStep.__call__
    monkeypatch.setattr(direct.DirectStep, "__call__", lambda self, *a: calls.append(1) or real(self, *a))
    vaelab.train(
        "cvae2",
        out=tmp_path / "run",
        dataset="shapes",
        image_size=28,
        limit=64,
        val_size=32,
        epochs=1,
        batch_size=32,
        sample_grid=0,
        progress=False,
        log=lambda line: None,
    )
    assert len(calls) == 2


def test_a_convolution_and_its_relu_run_as_one_stage_with_the_same_values():
    model, _, cfg = make("cvae2")
    fused, plain = Stack.build(model.decoder), Stack.build(model.decoder, fuse=False)
    assert len(plain.stages) == len(model.decoder) and len(fused.stages) == len(model.decoder) - 2  # two convT+ReLU
    weights = [p.detach() for m in model.decoder for p in m._parameters.values()]
    z = torch.randn(4, 2)
    torch.testing.assert_close(fused.forward(weights, z)[0], plain.forward(weights, z)[0], rtol=0, atol=0)


def test_a_layer_whose_class_changes_gets_its_rule_again():
    model, _, _ = make("cvae2")
    narrow = model.decoder[-1]
    first = direct.direct_step(model)
    narrow.__class__ = nn.ConvTranspose2d  # as benchmarks.common.count_flops does for a moment
    plain = direct.direct_step(model)
    narrow.__class__ = vaelab.models.layers.NarrowConvTranspose2d
    again = direct.direct_step(model)
    assert plain is not first and again is not plain
    assert again.decoder.stages[-1][1] is first.decoder.stages[-1][1] is not plain.decoder.stages[-1][1]


def test_an_optimiser_parameter_outside_the_model_gets_no_stale_gradient():
    model, _, cfg = make("mlp2")
    extra = torch.nn.Parameter(torch.zeros(3))
    extra.grad = torch.ones(3)
    opt = torch.optim.Adam([*model.parameters(), extra])
    train_step(model, opt, batch(model, cfg))
    assert extra.grad is None and torch.equal(extra, torch.zeros(3))  # as autograd's step leaves it


def test_no_gradient_is_computed_for_the_images():
    model, _, cfg = make("mlp2")  # Flatten first: the first Linear needs no input gradient either
    enc = Stack.build(model.encoder)
    weights = [p.detach() for m in model.encoder for p in m._parameters.values()]
    x = batch(model, cfg)
    h, saved = enc.forward(weights, x)
    grad_x, grads = enc.backward(weights, saved, torch.ones_like(h), need_input_grad=False)
    assert grad_x is None and all(g is not None for g in grads)
    grad_x, _ = enc.backward(weights, saved, torch.ones_like(h), need_input_grad=True)
    assert grad_x.shape == x.shape


@pytest.mark.parametrize(
    "c_out,kernel,padding,bias", [(1, 3, 1, True), (3, 3, 0, True), (2, 5, 2, False), (4, 3, 2, True)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_narrow_layers_rule_matches_a_plain_transposed_convolution_under_autograd(
    c_out, kernel, padding, bias, dtype
):
    torch.manual_seed(0)
    layer = vaelab.models.layers.NarrowConvTranspose2d(6, c_out, kernel, padding=padding, bias=bias)
    layer = layer.to(memory_format=torch.channels_last)  # as `runtime.place` puts it on the CPU
    rule = rule_for(layer)
    x = torch.randn(3, 6, 9, 9).contiguous(memory_format=torch.channels_last)
    weights = [layer.weight.detach().to(dtype), None if layer.bias is None else layer.bias.detach()]
    out, saved = rule.forward(layer, weights, x.to(dtype))
    grad = torch.randn(out.shape)
    grad_x, (grad_w, grad_b) = rule.backward(layer, weights, saved, grad, True)

    ref_x = x.to(dtype).float().requires_grad_()  # the reference in fp32 from the same (rounded) operands
    ref_w = weights[0].float().requires_grad_()
    ref_out = nn.functional.conv_transpose2d(ref_x, ref_w, layer.bias, padding=padding)
    ref_out.backward(grad)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert out.shape == ref_out.shape and rel_err(out, ref_out) < tol
    assert grad_x.is_contiguous(memory_format=torch.channels_last) and rel_err(grad_x, ref_x.grad) < tol
    assert grad_w.shape == layer.weight.shape and rel_err(grad_w, ref_w.grad) < tol
    if bias:
        assert rel_err(grad_b, layer.bias.grad) < 1e-6
    else:
        assert grad_b is None


@pytest.mark.parametrize(
    "c_in,c_out,kernel,stride,padding", [(32, 16, 3, 2, 0), (32, 8, (3, 5), (2, 1), (1, 2)), (48, 4, 4, 3, 1)]
)
@pytest.mark.parametrize("bias", [True, False])
def test_a_strided_convolutions_weight_gradient_from_patches_matches_autograd(
    c_in, c_out, kernel, stride, padding, bias
):
    torch.manual_seed(0)
    layer = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias).to(memory_format=torch.channels_last)
    rule = rule_for(layer)
    x = torch.randn(5, c_in, 13, 14).contiguous(memory_format=torch.channels_last).to(torch.bfloat16)
    weights = [None if p is None else p.detach().to(torch.bfloat16) for p in (layer.weight, layer.bias)]  # as the step
    out, saved = rule.forward(layer, weights, x)
    grad = torch.randn(out.shape).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    assert layers._weight_grad_by_patches(layer, x, grad)
    grad_x, (grad_w, grad_b) = rule.backward(layer, weights, saved, grad, True)

    ref_x = x.float().requires_grad_()  # the reference in fp32 from the same (rounded) operands
    ref_w = weights[0].float().requires_grad_()
    nn.functional.conv2d(ref_x, ref_w, None, stride, padding).backward(grad.float())
    assert grad_w.shape == layer.weight.shape and grad_w.dtype == torch.bfloat16
    assert rel_err(grad_w, ref_w.grad) < 4e-3  # bf16's rounding of the result (2^-9 relative at most)
    assert grad_x.shape == x.shape and rel_err(grad_x, ref_x.grad) < 4e-3
    assert (grad_b is None) == (not bias)
    if bias:
        torch.testing.assert_close(grad_b.float(), grad.float().sum((0, 2, 3)), rtol=1e-2, atol=1e-2)


def test_the_patches_stay_out_where_they_were_slower():
    x = torch.randn(2, 32, 9, 9).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    strided = nn.Conv2d(32, 8, 3, 2)
    assert layers._weight_grad_by_patches(strided, x.bfloat16(), grad.bfloat16())
    assert not layers._weight_grad_by_patches(strided, x, grad)  # fp32
    assert not layers._weight_grad_by_patches(nn.Conv2d(32, 8, 3), x.bfloat16(), grad.bfloat16())  # stride 1
    one_channel = torch.randn(2, 1, 9, 9).contiguous(memory_format=torch.channels_last).bfloat16()
    assert not layers._weight_grad_by_patches(nn.Conv2d(1, 8, 3, 2), one_channel, grad.bfloat16())
    transposed = nn.ConvTranspose2d(32, 8, 3, 2)
    assert not layers._weight_grad_by_patches(transposed, x.bfloat16(), grad.bfloat16())

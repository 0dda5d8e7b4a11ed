"""The transposed convolution with its bias gradient apart equals the plain layer, in every geometry."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from vaelab.models import layers
from vaelab.models.kernels import conv_transpose2d_bias_apart


def _plain_and_ours(c_in, c_out, stride, padding, output_padding, x_shape, layout, dtype=torch.float32, bias=True):
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(c_in, c_out, 3, stride=stride, padding=padding, output_padding=output_padding, bias=bias)
    plain = plain.to(dtype=dtype, memory_format=layout)
    params = [p for p in (plain.weight, plain.bias) if p is not None]
    x = torch.randn(*x_shape, dtype=dtype).contiguous(memory_format=layout)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = plain(xa)
    g = torch.randn_like(ya)
    grads_a = torch.autograd.grad(ya, (xa, *params), g)
    yb = conv_transpose2d_bias_apart(xb, plain.weight, plain.bias, plain.stride, plain.padding, plain.output_padding)
    grads_b = torch.autograd.grad(yb, (xb, *params), g)
    return (ya, *grads_a), (yb, *grads_b)


@pytest.mark.parametrize(
    "c_in,c_out,stride,padding,output_padding",
    [(6, 4, 2, 1, 1), (4, 6, 1, 1, 0), (5, 3, 2, 0, 0), (3, 2, 3, 1, 2), (2, 1, 1, 0, 0)],
)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_it_matches_the_plain_transposed_conv_values_and_gradients(
    c_in, c_out, stride, padding, output_padding, layout
):
    ref, ours = _plain_and_ours(
        c_in, c_out, stride, padding, output_padding, (3, c_in, 7, 5), layout, dtype=torch.float64
    )
    for name, a, b in zip(["output", "input grad", "weight grad", "bias grad"], ref, ours):
        assert a.shape == b.shape, name
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10, msg=name)


def test_it_works_without_a_bias():
    ref, ours = _plain_and_ours(4, 3, 2, 1, 1, (2, 4, 5, 5), torch.channels_last, dtype=torch.float64, bias=False)
    for a, b in zip(ref, ours):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_an_input_without_gradient_gets_none_and_the_weights_theirs():
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)  # an image batch: no gradient wanted
    g = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    ref = torch.autograd.grad(plain(x), (plain.weight, plain.bias), g)
    y = conv_transpose2d_bias_apart(x, plain.weight, plain.bias, plain.stride, plain.padding, plain.output_padding)
    for a, b in zip(ref, torch.autograd.grad(y, (plain.weight, plain.bias), g)):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


class _BackwardCalls(TorchDispatchMode):
    """Records the output mask of every `convolution_backward` call."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution_backward.default:
            self.masks.append(list(args[-1]))
        return func(*args, **(kwargs or {}))


def test_onednn_is_never_asked_for_the_bias_gradient():
    layer = layers.deconv_same(8, 4, stride=2).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    with _BackwardCalls() as calls:
        layer(x).sum().backward()
    assert calls.masks == [[True, True, False]]
    assert layer.bias.grad is not None and x.grad is not None
    torch.testing.assert_close(layer.bias.grad, torch.full((4,), 200.0))  # a gradient of ones over 2 images of 10x10


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_layer_takes_the_path_only_when_training_on_the_cpu(monkeypatch, precision):
    calls = []
    real = layers.conv_transpose2d_bias_apart
    monkeypatch.setattr(layers, "conv_transpose2d_bias_apart", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    layer = layers.deconv_same(16, 8, stride=2).to(memory_format=torch.channels_last)
    assert type(layer) is layers.BiasApartConvTranspose2d
    x = torch.randn(4, 16, 7, 7)  # NCHW, as a reshaped linear output arrives
    bf16 = precision == "bf16"
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        layer(x)  # inference
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = layer(x.requires_grad_())
    assert calls == [1] and out.shape == (4, 8, 14, 14)
    assert out.dtype == (torch.bfloat16 if bf16 else torch.float32)
    g = torch.randn(out.shape)
    out.backward(g.to(out.dtype))
    grads = [x.grad, layer.weight.grad, layer.bias.grad]
    # the plain layer in fp32: bf16 keeps about 3 significant digits
    x32 = x.detach().clone().requires_grad_()
    layer.weight.grad = layer.bias.grad = None
    nn.ConvTranspose2d.forward(layer, x32).backward(g)
    for ours, ref in zip(grads, [x32.grad, layer.weight.grad, layer.bias.grad]):
        assert ours.dtype == torch.float32
        assert ((ours - ref).abs().max() / ref.abs().max()).item() < (2e-2 if bf16 else 1e-5)


def test_a_bf16_sum_rounds_like_an_fp32_sum():
    """The bias gradient sums in the gradient's dtype: for bf16 that must still accumulate in fp32."""
    torch.manual_seed(0)
    g = (torch.randn(8, 16, 28, 28) * 3 + 1).contiguous(memory_format=torch.channels_last).bfloat16()
    torch.testing.assert_close(g.sum((0, 2, 3)), g.sum((0, 2, 3), dtype=torch.float32).bfloat16(), rtol=0, atol=0)

"""The layers written for speed compute exactly what the plain PyTorch layers do."""

import pytest
import torch
from torch import nn

from vaelab.models.layers import BiasApartConvTranspose2d, Flatten, NarrowConvTranspose2d, deconv_same


@pytest.mark.parametrize("c_out,padding", [(1, 1), (3, 1), (2, 0)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_narrow_transposed_conv_matches_the_plain_one_values_and_gradients(c_out, padding, layout):
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(16, c_out, 3, padding=padding)
    narrow = NarrowConvTranspose2d(16, c_out, 3, padding=padding)
    narrow.load_state_dict(plain.state_dict())  # same parameter names and shapes
    plain, narrow = plain.to(memory_format=layout), narrow.to(memory_format=layout)
    x = torch.randn(5, 16, 9, 11).contiguous(memory_format=layout)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = plain(xa), narrow(xb)
    assert ya.shape == yb.shape
    torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(narrow.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(narrow.bias.grad, plain.bias.grad, rtol=1e-4, atol=1e-4)


def test_deconv_same_uses_the_narrow_kernel_only_where_it_applies():
    assert type(deconv_same(32, 1)) is NarrowConvTranspose2d
    assert type(deconv_same(32, 3)) is NarrowConvTranspose2d
    assert type(deconv_same(32, 64)) is BiasApartConvTranspose2d  # wide: oneDNN's own forward is fast
    assert type(deconv_same(32, 1, stride=2)) is BiasApartConvTranspose2d  # not a plain correlation


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_flatten_gives_back_its_input_layout_with_plain_flatten_values(layout):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 2).contiguous(memory_format=layout)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = nn.Flatten()(xa), Flatten()(xb)
    torch.testing.assert_close(yb, ya, rtol=0, atol=0)  # the (C, H, W) order either way
    g = torch.randn_like(ya)
    (ga,), (gb,) = torch.autograd.grad(ya, xa, g), torch.autograd.grad(yb, xb, g)  # as the layer below sees them
    torch.testing.assert_close(gb, ga, rtol=0, atol=0)
    assert gb.is_contiguous(memory_format=layout)
    assert ga.is_contiguous()  # plain Flatten: NCHW whatever came in
    with torch.no_grad():
        assert Flatten()(x).grad_fn is None and torch.equal(Flatten()(x), nn.Flatten()(x))

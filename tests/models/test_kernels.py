"""The matrix-product weight gradient of transposed convolutions equals the plain layer's, in every geometry."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaelab.models import kernels, layers
from vaelab.models.kernels import conv_transpose2d_gemm_weight_grad, im2col


@pytest.mark.parametrize("stride,padding,kernel", [(1, 1, 3), (2, 1, 3), (2, 0, 3), (3, 2, 5), (1, 0, 1)])
def test_im2col_gathers_the_windows_unfold_gathers(stride, padding, kernel):
    t = torch.randn(3, 9, 11, 4)  # (B, H, W, C)
    ho, wo = ((n + 2 * padding - kernel) // stride + 1 for n in (9, 11))
    cols = im2col(t, (ho, wo), (kernel, kernel), (stride, stride), (padding, padding))
    ref = F.unfold(t.permute(0, 3, 1, 2), kernel, padding=padding, stride=stride)  # (B, C*k*k, Ho*Wo): (c, i, j)
    ref = ref.unflatten(1, (4, kernel * kernel)).permute(0, 3, 2, 1).reshape(-1, kernel * kernel * 4)  # (i, j, c)
    torch.testing.assert_close(cols, ref, rtol=0, atol=0)


def _plain_and_gemm(c_in, c_out, stride, padding, output_padding, x_shape, layout, dtype=torch.float32):
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(c_in, c_out, 3, stride=stride, padding=padding, output_padding=output_padding)
    plain = plain.to(dtype=dtype, memory_format=layout)
    x = torch.randn(*x_shape, dtype=dtype).contiguous(memory_format=layout)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = plain(xa)
    g = torch.randn_like(ya)
    grads_a = torch.autograd.grad(ya, (xa, plain.weight, plain.bias), g)
    yb = conv_transpose2d_gemm_weight_grad(xb, plain.weight, plain.bias, plain.stride, plain.padding,
                                           plain.output_padding)
    grads_b = torch.autograd.grad(yb, (xb, plain.weight, plain.bias), g)
    return (ya, *grads_a), (yb, *grads_b)


@pytest.mark.parametrize("c_in,c_out,stride,padding,output_padding", [(6, 4, 2, 1, 1), (4, 6, 1, 1, 0), (5, 3, 2, 0, 0),
                                                                      (3, 2, 3, 1, 2), (2, 1, 1, 0, 0)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gemm_weight_gradient_matches_the_plain_transposed_conv(c_in, c_out, stride, padding, output_padding, layout):
    ref, ours = _plain_and_gemm(c_in, c_out, stride, padding, output_padding, (3, c_in, 7, 5), layout,
                                dtype=torch.float64)
    for name, a, b in zip(["output", "input grad", "weight grad", "bias grad"], ref, ours):
        assert a.shape == b.shape, name
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10, msg=name)


def test_the_weight_gradient_is_the_same_when_built_a_few_images_at_a_time(monkeypatch):
    whole = _plain_and_gemm(8, 4, 2, 1, 1, (7, 8, 6, 6), torch.channels_last)[1]
    monkeypatch.setattr(kernels, "IM2COL_CHUNK_BYTES", 2 * 6 * 6 * 9 * 4 * 4)  # 2 images per chunk: 4 chunks
    chunked = _plain_and_gemm(8, 4, 2, 1, 1, (7, 8, 6, 6), torch.channels_last)[1]
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_the_layer_takes_the_gemm_path_only_when_training_in_bf16_on_the_cpu(monkeypatch):
    calls = []
    real = layers.conv_transpose2d_gemm_weight_grad
    monkeypatch.setattr(layers, "conv_transpose2d_gemm_weight_grad", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    layer = layers.deconv_same(16, 8, stride=2).to(memory_format=torch.channels_last)
    assert type(layer) is layers.GemmGradConvTranspose2d
    x = torch.randn(4, 16, 7, 7)  # NCHW, as a reshaped linear output arrives
    layer(x)  # fp32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)  # inference
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.requires_grad_())
    assert calls == [1] and out.dtype == torch.bfloat16 and out.shape == (4, 8, 14, 14)
    g = torch.randn(out.shape)
    out.backward(g.bfloat16())
    grads = [x.grad, layer.weight.grad, layer.bias.grad]
    # the same layer in fp32: bf16 keeps about 3 significant digits
    x32 = x.detach().clone().requires_grad_()
    layer.weight.grad = layer.bias.grad = None
    nn.ConvTranspose2d.forward(layer, x32).backward(g)
    for ours, ref in zip(grads, [x32.grad, layer.weight.grad, layer.bias.grad]):
        assert ours.dtype == torch.float32
        assert ((ours - ref).abs().max() / ref.abs().max()).item() < 2e-2


def test_a_bf16_sum_rounds_like_an_fp32_sum():
    """The bias gradient sums in the gradient's dtype: for bf16 that must still accumulate in fp32."""
    torch.manual_seed(0)
    g = (torch.randn(8, 16, 28, 28) * 3 + 1).contiguous(memory_format=torch.channels_last).bfloat16()
    torch.testing.assert_close(g.sum((0, 2, 3)), g.sum((0, 2, 3), dtype=torch.float32).bfloat16(), rtol=0, atol=0)

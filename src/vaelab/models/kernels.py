"""A faster backward for transposed convolutions in bf16 on the CPU: the weight gradient as one matrix product.

oneDNN's bf16 weight-gradient kernel for transposed convolutions is slow on
CPUs with native bf16 (AVX-512 BF16): for cvae2's 64->32 stride-2 layer at
batch 32 it took 3.5 ms, against 0.67 ms for the data gradient and 1.65 ms
for the same weight gradient in fp32 (each timed alone through
`aten.convolution_backward` with one output mask; the README's speed section
has what it does to a training step). The weight gradient of a transposed convolution is
a correlation of its input with the output gradient, so it can be written
as unfold-then-multiply: gather the output gradient's 3x3 windows (one row
per input pixel) and multiply by the input, a (C_in x B*H*W) @ (B*H*W x
k*k*C_out) product that runs near the bf16 matrix peak. The forward pass
and the data gradient stay oneDNN's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_aten = torch.ops.aten
IM2COL_CHUNK_BYTES = 32 << 20  # the gathered windows are built this many bytes of batch at a time


def im2col(t: torch.Tensor, out_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]) -> torch.Tensor:
    """(B, H, W, C) -> (B*Ho*Wo, kh*kw*C): row (b, y, x) holds t[b, y*sh + i - ph, x*sw + j - pw, c], zero outside.

    The windows a convolution with this kernel, stride and padding would
    read to produce an (Ho, Wo) map from `t`: one zero-padded copy, then one
    strided gather.
    """
    b, h, w, c = t.shape
    (ho, wo), (kh, kw), (sh, sw), (ph, pw) = out_hw, kernel, stride, padding
    bottom, right = max(0, (ho - 1) * sh + kh - ph - h), max(0, (wo - 1) * sw + kw - pw - w)
    tp = F.pad(t, (0, 0, pw, right, ph, bottom))
    s_b, s_h, s_w, s_c = tp.stride()
    windows = tp.as_strided((b, ho, wo, kh, kw, c), (s_b, sh * s_h, sw * s_w, s_h, s_w, s_c))
    return windows.reshape(b * ho * wo, kh * kw * c)


def _weight_grad(x: torch.Tensor, grad: torch.Tensor, weight_shape: torch.Size, stride: tuple[int, int],
                 padding: tuple[int, int]) -> torch.Tensor:
    """d loss / d weight of a transposed convolution, (C_in, C_out, kh, kw), by unfold-then-multiply."""
    c_in, c_out, kh, kw = weight_shape
    xl = x.permute(0, 2, 3, 1)                   # (B, H, W, C_in): a view for channels-last input
    gl = grad.permute(0, 2, 3, 1).contiguous()   # (B, Ho, Wo, C_out)
    per_image = x.shape[2] * x.shape[3] * kh * kw * c_out * grad.element_size()
    chunk = max(1, IM2COL_CHUNK_BYTES // per_image)
    total = None
    for start in range(0, x.shape[0], chunk):
        cols = im2col(gl[start:start + chunk], tuple(x.shape[2:]), (kh, kw), stride, padding)
        part = xl[start:start + chunk].reshape(-1, c_in).T @ cols  # (C_in, kh*kw*C_out)
        if chunk >= x.shape[0]:
            total = part
        elif total is None:
            total = part.float()  # several chunks: accumulate in fp32
        else:
            total += part
    return total.to(grad.dtype).view(c_in, kh, kw, c_out).permute(0, 3, 1, 2)  # channels-last strides, like the weight


class _ConvTranspose2dGemmWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, output_padding):
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, output_padding)
        ctx.has_bias = bias is not None
        return _aten.convolution(x, weight, bias, stride, padding, [1, 1], True, output_padding, 1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, output_padding = ctx.geometry
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _aten.convolution_backward(grad, x, weight, None, stride, padding, [1, 1], True,
                                                output_padding, 1, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(x, grad, weight.shape, stride, padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))  # accumulates in fp32 for bf16 too: the same as summing in fp32 and rounding
        return grad_x, grad_w, grad_b, None, None, None


def conv_transpose2d_gemm_weight_grad(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                                      stride: tuple[int, int], padding: tuple[int, int],
                                      output_padding: tuple[int, int]) -> torch.Tensor:
    """`F.conv_transpose2d` (groups 1, dilation 1) whose weight gradient is one matrix product.

    Under CPU autocast the operands are cast to the autocast dtype first, as
    autocast would for `conv_transpose2d`.
    """
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    if weight.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)  # one layout for oneDNN (a reshaped linear output is NCHW)
    return _ConvTranspose2dGemmWeightGrad.apply(x, weight, bias, list(stride), list(padding), list(output_padding))

"""Each supported layer's forward and hand-written backward, as plain ATen calls.

A rule's `forward(module, weights, x)` returns the layer's output and what its
backward needs; `backward(module, weights, saved, grad, need_input_grad)`
returns the input's gradient (None when not needed) and the gradients of
`weights`, in the order of `module._parameters` (None for a missing bias).
`weights` are the module's parameters in the step's compute dtype. The
forward computes what the module's own `forward` computes, with the same
calls except two that give the same values faster (a convolution and the
ReLU after it as one oneDNN call; the narrow layer's channel sum as a
matrix product); the backward makes the calls autograd would make, with
every bias gradient summed apart (as `models/kernels.py` explains for the
transposed convolutions), except for the narrow layer, whose gradients
come from two plain convolutions instead (`_narrow_backward`), and for a
strided convolution's weight gradient in bf16, one matrix product of the
input's patches instead (`_patch_weight_grad`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...models import layers

_aten = torch.ops.aten
Tensor = torch.Tensor


@dataclass(frozen=True)
class Rule:
    forward: Callable[..., tuple[Tensor, Any]]
    backward: Callable[..., tuple[Tensor | None, tuple[Tensor | None, ...]]]


def _bias_grad(grad: Tensor, bias: Tensor | None, dims: tuple[int, ...]) -> Tensor | None:
    return None if bias is None else grad.sum(dims)  # bf16 sums accumulate in fp32


# --- convolutions ---------------------------------------------------------------------------


def _conv_args(m: nn.Conv2d | nn.ConvTranspose2d) -> tuple:
    transposed = isinstance(m, nn.ConvTranspose2d)
    return (
        list(m.stride),
        list(m.padding),
        list(m.dilation),
        transposed,
        list(m.output_padding) if transposed else [0, 0],
        m.groups,
    )


def _conv_input(m, w, x):
    if isinstance(m, nn.ConvTranspose2d) and w.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)  # as BiasApartConvTranspose2d does
    return x


def _conv_forward(m, weights, x):
    w, b = weights
    x = _conv_input(m, w, x)
    return _aten.convolution(x, w, b, *_conv_args(m)), x


def _conv_backward(m, weights, x, grad, need_input_grad):
    w, b = weights
    if _weight_grad_by_patches(m, x, grad):
        grad_x = (
            _aten.convolution_backward(grad, x, w, None, *_conv_args(m), [True, False, False])[0]
            if need_input_grad
            else None
        )
        grad_w = _patch_weight_grad(m, x, grad)
    else:
        grad_x, grad_w, _ = _aten.convolution_backward(grad, x, w, None, *_conv_args(m), [need_input_grad, True, False])
    return grad_x, (grad_w, _bias_grad(grad, b, (0, 2, 3)))


# A strided convolution's weight gradient in bf16 as one matrix product: the output gradient (a row per
# output pixel) times the input's patches. oneDNN's `jit_bf16` weight-gradient kernel (on CPUs with AVX-512
# BF16 but no AMX) is slow on such small maps: cvae2's 32->64 layer at batch 32 took 0.56 ms for both
# gradients in one call and 0.45 ms as the input gradient's call plus this (2-core AMD EPYC). Measured
# against the one call on whole training steps (one process alternating the two, median of paired ratios,
# bf16): cvae2 at batch 32 1.01x to 1.07x (eight runs, median 1.02x), conv16 1.05x and 1.07x at 128 and
# 1.02x at 32, keras-conv2 1.03x and 1.05x at 256. Kept out where it lost: fp32 (cvae2 1.00x, conv16
# 0.96x), a one-channel input (cvae2's first layer, 142 against 134 us) and the transposed layers (whose
# patches are of the larger output gradient; the step ran 0.99x to 1.01x with them). Same values up to
# float rounding: both accumulate in fp32 and round once.
_PATCH_MIN_CHANNELS = 32


def _weight_grad_by_patches(m, x, grad) -> bool:
    return (
        type(m) is nn.Conv2d
        and m.groups == 1
        and m.dilation == (1, 1)
        and m.stride != (1, 1)
        and x.dtype == torch.bfloat16
        and x.shape[1] >= _PATCH_MIN_CHANNELS
        and x.is_contiguous(memory_format=torch.channels_last)
        and grad.is_contiguous(memory_format=torch.channels_last)
    )


def _patch_weight_grad(m, x, grad):
    """(C_out, C_in, kh, kw), channels-last like the weight: `grad`'s pixels times `x`'s (kh, kw, C_in) patches."""
    (kh, kw), (sh, sw), (ph, pw) = m.kernel_size, m.stride, m.padding
    if ph or pw:
        x = torch.nn.functional.pad(x, (pw, pw, ph, ph)).contiguous(memory_format=torch.channels_last)
    n, c, oh, ow = grad.shape
    pixels = x.permute(0, 2, 3, 1)  # a view: (N, H, W, C_in), C_in contiguous
    s_n, s_h, s_w, _ = pixels.stride()
    patches = pixels.as_strided((n, oh, ow, kh, kw, x.shape[1]), (s_n, sh * s_h, sw * s_w, s_h, s_w, 1))
    rows = grad.permute(0, 2, 3, 1).reshape(-1, c)  # a view: one row per output pixel
    return (rows.t() @ patches.reshape(rows.shape[0], -1)).view(c, kh, kw, -1).permute(0, 3, 1, 2)


def _conv_supported(m: nn.Module) -> bool:
    return m.padding_mode == "zeros" and not isinstance(m.padding, str)


# A convolution and the ReLU after it: one oneDNN call with the ReLU as its post-op, the same values.


def _conv_relu_forward(m, weights, x):
    w, b = weights
    stride, padding, dilation, transposed, output_padding, groups = _conv_args(m)
    x = _conv_input(m, w, x)
    if transposed:
        y = torch.ops.mkldnn._convolution_transpose_pointwise(
            x, w, b, padding, output_padding, stride, dilation, groups, "relu", [], ""
        )
    else:
        y = torch.ops.mkldnn._convolution_pointwise(x, w, b, padding, stride, dilation, groups, "relu", [], "")
    return y, (x, y)


def _conv_relu_backward(m, weights, saved, grad, need_input_grad):
    x, y = saved
    return _conv_backward(m, weights, x, _aten.threshold_backward(grad, y, 0), need_input_grad)


def _fusable(m: nn.Module) -> bool:
    """oneDNN's fused convolution, for a layer it takes as it is (groups 1 to keep to what was measured)."""
    return torch.backends.mkldnn.is_available() and m.groups == 1


# NarrowConvTranspose2d: forward, its depthwise correlation and channel sum, as its forward computes them;
# backward, two plain convolutions (below).


def _narrow_forward(m, weights, x):
    w, _ = weights
    c_in, c_out = w.shape[:2]
    depthwise, pad = m.as_depthwise(w)
    maps = _aten.convolution(x, depthwise, None, [1, 1], pad, [1, 1], False, [0, 0], c_in)
    if maps.dtype == torch.bfloat16 and maps.is_contiguous(memory_format=torch.channels_last):
        # the sum over the inputs as a product with a 0/1 matrix, which accumulates in fp32 too: in bf16
        # 1.8x faster than `sum` on channels-last maps, in fp32 1.7x slower (cvae2, batch 32: 92 against
        # 163 us, and 118 against 68)
        b, _, h, wd = maps.shape
        select = torch.eye(c_out, dtype=maps.dtype).repeat(c_in, 1)  # row c*C_out + o picks output o
        out = (maps.permute(0, 2, 3, 1).reshape(-1, c_in * c_out) @ select).view(b, h, wd, c_out).permute(0, 3, 1, 2)
    else:
        out = maps.unflatten(1, (c_in, c_out)).sum(1)
    if m.bias is not None:  # the master bias, as under autocast: a bf16 sum plus an fp32 bias is fp32
        out = out + m.bias.view(1, -1, 1, 1)
    return out, x


def _narrow_backward(m, weights, x, grad, need_input_grad):
    """A stride-1 transposed convolution's gradients as plain convolutions of the (few-channel) output gradient.

    With W of shape (C_in, C_out, kh, kw) and padding p, the input gradient is
    the correlation of the output gradient with W, which is `conv2d(grad, W,
    padding=p)` (W read as C_in filters over C_out channels), and the weight
    gradient is that convolution's weight gradient with `x` as its output
    gradient. Autograd's backward of the depthwise forward first copies the
    output gradient to all C_in*C_out maps; this does not, and makes a cvae2
    step at batch 32 1.02x to 1.04x faster in bf16 and 1.03x in fp32 (one
    process alternating blocks of steps). The gradients are autograd's up to
    float rounding (tests/training/test_direct.py).
    """
    w, _ = weights
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    g = grad.to(w.dtype).contiguous(memory_format=layout)  # with w in it too, the input gradient comes in x's layout
    padding = list(m.padding)
    grad_x = _aten.convolution(g, w, None, [1, 1], padding, [1, 1], False, [0, 0], 1) if need_input_grad else None
    _, grad_w, _ = _aten.convolution_backward(
        x, g, w, None, [1, 1], padding, [1, 1], False, [0, 0], 1, [False, True, False]
    )
    return grad_x, (grad_w, _bias_grad(grad, m.bias, (0, 2, 3)))


def _narrow_supported(m: nn.Module) -> bool:
    return _conv_supported(m) and m.stride == (1, 1) and m.dilation == (1, 1) and m.groups == 1


# --- dense, activations, reshapes -----------------------------------------------------------


def _linear_forward(m, weights, x):
    w, b = weights
    return (_aten.addmm(b, x, w.t()) if b is not None else x @ w.t()), x


def _linear_backward(m, weights, x, grad, need_input_grad):
    w, b = weights
    return (grad @ w if need_input_grad else None), (grad.t() @ x, _bias_grad(grad, b, (0,)))


def _relu_forward(m, weights, x):
    y = _aten.relu(x)
    return y, y


def _relu_backward(m, weights, y, grad, need_input_grad):
    return _aten.threshold_backward(grad, y, 0), ()


def _flatten_forward(m, weights, x):
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return x.flatten(1), (x.shape, channels_last)


def _flatten_backward(m, weights, saved, grad, need_input_grad):
    shape, channels_last = saved  # the gradient in the input's layout, as layers.Flatten hands it back
    grad = grad.reshape(shape)
    return (grad.contiguous(memory_format=torch.channels_last) if channels_last else grad), ()


def _reshape_forward(m, weights, x):
    return x.reshape(x.shape[0], *m.shape), x.shape


def _reshape_backward(m, weights, shape, grad, need_input_grad):
    return grad.reshape(shape), ()


def _unflatten_forward(m, weights, x):  # nn.Unflatten: a reshape, as layers.Reshape (its backward is Reshape's)
    return x.unflatten(m.dim, m.unflattened_size), x.shape


_conv = Rule(_conv_forward, _conv_backward)
_CONV_RELU = Rule(_conv_relu_forward, _conv_relu_backward)
_flatten = Rule(_flatten_forward, _flatten_backward)

# By exact type: a subclass may compute something else, so it takes the autograd path.
_RULES: dict[type, tuple[Callable[[nn.Module], bool], Rule]] = {
    nn.Conv2d: (_conv_supported, _conv),
    nn.ConvTranspose2d: (_conv_supported, _conv),
    layers.BiasApartConvTranspose2d: (_conv_supported, _conv),
    layers.NarrowConvTranspose2d: (_narrow_supported, Rule(_narrow_forward, _narrow_backward)),
    nn.Linear: (lambda m: True, Rule(_linear_forward, _linear_backward)),
    nn.ReLU: (lambda m: True, Rule(_relu_forward, _relu_backward)),
    nn.Flatten: (lambda m: m.start_dim == 1 and m.end_dim == -1, _flatten),
    layers.Flatten: (lambda m: m.start_dim == 1 and m.end_dim == -1, _flatten),
    layers.Reshape: (lambda m: True, Rule(_reshape_forward, _reshape_backward)),
    nn.Unflatten: (lambda m: True, Rule(_unflatten_forward, _reshape_backward)),
}


def rule_for(module: nn.Module) -> Rule | None:
    """The rule for `module`, or None when this layer (or this configuration of it) has none."""
    supported, rule = _RULES.get(type(module), (None, None))
    return rule if supported is not None and supported(module) else None


def fused_rule_for(module: nn.Module, after: nn.Module) -> Rule | None:
    """One rule for `module` and the layer `after` it, where the two run as one call; else None."""
    if rule_for(module) is _conv and type(after) is nn.ReLU and _fusable(module):
        return _CONV_RELU
    return None

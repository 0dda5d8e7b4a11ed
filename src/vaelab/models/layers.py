"""Small building blocks shared by the seed networks, written to match their frameworks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VaelabError
from .kernels import conv_transpose2d_bias_apart


class Reshape(nn.Module):
    """(B, prod(shape)) -> (B, *shape): Keras' `Reshape` / MATLAB's project-and-reshape."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class _FlattenKeepingLayout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    """`nn.Flatten` whose gradient comes back channels-last when its input was.

    The flattened order is PyTorch's (C, H, W) either way, so the next
    layer's weights mean the same. Plain `nn.Flatten` hands a channels-last
    encoder an NCHW gradient, and its ReLU and convolution backward then mix
    two layouts (cvae2, bf16: its 6x6 ReLU backward took 150 us in the profiler, 15 us with matching layouts).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.dim() == 4
            and self.start_dim == 1
            and self.end_dim == -1
            and x.requires_grad
            and torch.is_grad_enabled()
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            return _FlattenKeepingLayout.apply(x)
        return super().forward(x)


def conv_same(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with TensorFlow's 'same' output size (H/stride)."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


def conv_valid(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution without padding (TensorFlow's 'valid')."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=0)


def deconv_same(c_in: int, c_out: int, stride: int = 1) -> nn.ConvTranspose2d:
    """3x3 transposed convolution with TensorFlow's 'same' output size (H*stride)."""
    if stride == 1 and c_out <= NarrowConvTranspose2d.MAX_OUT:
        return NarrowConvTranspose2d(c_in, c_out, 3, padding=1)
    return BiasApartConvTranspose2d(c_in, c_out, 3, stride=stride, padding=1, output_padding=stride - 1)


class BiasApartConvTranspose2d(nn.ConvTranspose2d):
    """`nn.ConvTranspose2d` whose training backward on the CPU leaves the bias gradient out of oneDNN's call.

    Same parameters and same results (up to float rounding); only the
    backward call differs, and only when training on the CPU, where oneDNN's
    weight-gradient kernel is up to 2.2x slower when it computes the bias
    gradient too (`models/kernels.py`). Everything else is `nn.ConvTranspose2d`.
    """

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if (
            output_size is None
            and x.device.type == "cpu"
            and self.groups == 1
            and self.dilation == (1, 1)
            and torch.is_grad_enabled()
            and self.weight.requires_grad
        ):
            return conv_transpose2d_bias_apart(
                x, self.weight, self.bias, self.stride, self.padding, self.output_padding
            )
        return super().forward(x, output_size)


class NarrowConvTranspose2d(nn.ConvTranspose2d):
    """A stride-1 transposed convolution to a few channels (an image's 1 or 3), computed depthwise.

    Same parameters, same initialisation and same result (up to float rounding)
    as `nn.ConvTranspose2d`; only the kernel differs. oneDNN handles one output
    channel poorly: cvae2's last layer cost as much as the 16x larger layer
    before it. Here each input channel is correlated with its flipped 3x3
    filters (a depthwise convolution, C_in*C_out maps) and the maps are summed
    over C_in: 4x faster forward and 1.6x forward+backward on 2 CPU cores
    (batch 32, channels-last). Only for stride 1, where the transposed
    convolution is exactly a correlation with the flipped kernel.
    """

    MAX_OUT = 4  # the depthwise maps are C_in * C_out channels: worth it only for a few outputs

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or self.stride != (1, 1)
            or self.dilation != (1, 1)
            or self.groups != 1
            or output_size is not None
        ):  # measured on the CPU only; cuDNN has its own kernels
            return super().forward(x, output_size)
        c_in, c_out = self.weight.shape[:2]
        depthwise, pad = self.as_depthwise(self.weight)
        maps = F.conv2d(x, depthwise, None, padding=pad, groups=c_in)  # (B, C_in*C_out, H, W)
        out = maps.unflatten(1, (c_in, c_out)).sum(1)  # (B, C_out, H, W)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def as_depthwise(self, weight: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """`weight` (C_in, C_out, kh, kw) as depthwise filters (C_in*C_out, 1, kh, kw), map c*C_out + o, and
        the padding of their correlation."""
        c_in, c_out, kh, kw = weight.shape
        pad = [kh - 1 - self.padding[0], kw - 1 - self.padding[1]]
        return weight.flip(-1, -2).reshape(c_in * c_out, 1, kh, kw), pad


def keras_batchnorm(channels: int, dims: int = 2) -> nn.Module:
    """BatchNorm with Keras' defaults: momentum 0.99 (PyTorch's 0.01) and eps 1e-3."""
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=1e-3, momentum=0.01)


def glorot_init(module: nn.Module) -> nn.Module:
    """Keras' and MATLAB's default initialisation: Glorot-uniform weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def conv_out(size: int, stride: int, padding: int, kernel: int = 3) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def require_divisible(name: str, image_shape: tuple[int, int, int], factor: int) -> tuple[int, int]:
    """The decoder's start size for `factor`-fold upsampling, or a clear error."""
    _, h, w = image_shape
    if h % factor or w % factor:
        raise VaelabError(f"network {name!r} needs image height and width divisible by {factor}, got {h}x{w}")
    return h // factor, w // factor

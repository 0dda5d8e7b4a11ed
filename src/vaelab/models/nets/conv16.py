"""Seed 001 (MATLAB example): two stride-2 convs, 16 latent channels, project-and-reshape decoder.

Encoder: conv 32 3x3 s2 same relu -> conv 64 3x3 s2 same relu -> FC 2*16.
Decoder: FC to 7x7x64 -> convT 64 s2 relu -> convT 32 s2 relu -> convT K.
The seed's final sigmoid is the Gaussian likelihood's mean link.
"""

from __future__ import annotations

from torch import nn

from ..layers import Flatten, Reshape, conv_same, deconv_same, glorot_init, require_divisible
from ..registry import DECODERS, ENCODERS


@ENCODERS.register("conv16")
def encoder(image_shape: tuple[int, int, int], out_features: int) -> nn.Module:
    c, _, _ = image_shape
    h4, w4 = require_divisible("conv16", image_shape, 4)
    return glorot_init(
        nn.Sequential(
            conv_same(c, 32, stride=2),
            nn.ReLU(),  # (B, 32, H/2, W/2)
            conv_same(32, 64, stride=2),
            nn.ReLU(),  # (B, 64, H/4, W/4)
            Flatten(),
            nn.Linear(64 * h4 * w4, out_features),
        )
    )


@DECODERS.register("conv16")
def decoder(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int) -> nn.Module:
    h4, w4 = require_divisible("conv16", image_shape, 4)
    return glorot_init(
        nn.Sequential(
            nn.Linear(latent_dim, 64 * h4 * w4),  # project ...
            Reshape(64, h4, w4),  # ... and reshape: (B, 64, 7, 7)
            deconv_same(64, 64, stride=2),
            nn.ReLU(),  # (B, 64, 14, 14)
            deconv_same(64, 32, stride=2),
            nn.ReLU(),  # (B, 32, 28, 28)
            deconv_same(32, out_channels),  # (B, K, 28, 28)
        )
    )

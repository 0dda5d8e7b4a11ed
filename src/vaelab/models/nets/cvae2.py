"""Seed 003 (TensorFlow CVAE tutorial): two valid convs down, three transposed convs up.

Encoder: conv 32 3x3 s2 valid relu -> conv 64 3x3 s2 valid relu -> flatten ->
dense 2*latent. Decoder: dense 7*7*32 relu -> reshape -> convT 64 s2 relu ->
convT 32 s2 relu -> convT K s1 (logits).
"""

from __future__ import annotations

from torch import nn

from ..layers import Flatten, Reshape, conv_out, conv_valid, deconv_same, glorot_init, require_divisible
from ..registry import DECODERS, ENCODERS


@ENCODERS.register("cvae2")
def encoder(image_shape: tuple[int, int, int], out_features: int) -> nn.Module:
    c, h, w = image_shape
    h2, w2 = (conv_out(conv_out(s, 2, 0), 2, 0) for s in (h, w))  # 28 -> 13 -> 6
    return glorot_init(
        nn.Sequential(
            conv_valid(c, 32, stride=2),
            nn.ReLU(),  # (B, 32, 13, 13)
            conv_valid(32, 64, stride=2),
            nn.ReLU(),  # (B, 64, 6, 6)
            Flatten(),
            nn.Linear(64 * h2 * w2, out_features),
        )
    )


@DECODERS.register("cvae2")
def decoder(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int) -> nn.Module:
    h4, w4 = require_divisible("cvae2", image_shape, 4)
    return glorot_init(
        nn.Sequential(
            nn.Linear(latent_dim, 32 * h4 * w4),
            nn.ReLU(),
            Reshape(32, h4, w4),  # (B, 32, 7, 7)
            deconv_same(32, 64, stride=2),
            nn.ReLU(),  # (B, 64, 14, 14)
            deconv_same(64, 32, stride=2),
            nn.ReLU(),  # (B, 32, 28, 28)
            deconv_same(32, out_channels),  # (B, K, 28, 28)
        )
    )

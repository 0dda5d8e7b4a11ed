"""Seed 002 (Keras intro, after Chollet's book): four 3x3 convs, dense 32, latent 2.

Encoder: conv 32 -> conv 64 s2 -> conv 64 -> conv 64 (all 'same', relu) ->
flatten -> dense 32 relu -> (mu, log var). Decoder: dense 14*14*64 relu ->
reshape -> convT 32 s2 relu -> conv 1 (the seed's sigmoid is the Bernoulli's).
"""

from __future__ import annotations

from torch import nn

from ..layers import Flatten, Reshape, conv_same, deconv_same, glorot_init, require_divisible
from ..registry import DECODERS, ENCODERS


@ENCODERS.register("keras-conv2")
def encoder(image_shape: tuple[int, int, int], out_features: int) -> nn.Module:
    c, h, w = image_shape
    h2, w2 = require_divisible("keras-conv2", image_shape, 2)
    return glorot_init(
        nn.Sequential(
            conv_same(c, 32),
            nn.ReLU(),  # (B, 32, H, W)
            conv_same(32, 64, stride=2),
            nn.ReLU(),  # (B, 64, H/2, W/2)
            conv_same(64, 64),
            nn.ReLU(),
            conv_same(64, 64),
            nn.ReLU(),
            Flatten(),  # (B, 64*H/2*W/2)
            nn.Linear(64 * h2 * w2, 32),
            nn.ReLU(),
            nn.Linear(32, out_features),
        )
    )


@DECODERS.register("keras-conv2")
def decoder(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int) -> nn.Module:
    h2, w2 = require_divisible("keras-conv2", image_shape, 2)
    return glorot_init(
        nn.Sequential(
            nn.Linear(latent_dim, 64 * h2 * w2),
            nn.ReLU(),
            Reshape(64, h2, w2),  # (B, 64, H/2, W/2)
            deconv_same(64, 32, stride=2),
            nn.ReLU(),  # (B, 32, H, W)
            conv_same(32, out_channels),  # (B, K, H, W)
        )
    )

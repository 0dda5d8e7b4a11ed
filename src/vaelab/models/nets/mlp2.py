"""Seed 004 (tf.keras blog): 784 -> 256 relu -> (mu, log var); 2 -> 256 relu -> 784.

The seed's final sigmoid is left out: the Bernoulli likelihood takes logits,
which is the same model, computed stably.
"""

from __future__ import annotations

from torch import nn

from ..layers import Reshape, glorot_init
from ..registry import DECODERS, ENCODERS

HIDDEN = 256


@ENCODERS.register("mlp2")
def encoder(image_shape: tuple[int, int, int], out_features: int) -> nn.Module:
    c, h, w = image_shape
    return glorot_init(
        nn.Sequential(
            nn.Flatten(),  # (B, C*H*W)
            nn.Linear(c * h * w, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, out_features),  # the seed's two Dense(2) heads, side by side
        )
    )


@DECODERS.register("mlp2")
def decoder(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int) -> nn.Module:
    _, h, w = image_shape
    return glorot_init(
        nn.Sequential(
            nn.Linear(latent_dim, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, out_channels * h * w),
            Reshape(out_channels, h, w),  # (B, K, H, W)
        )
    )

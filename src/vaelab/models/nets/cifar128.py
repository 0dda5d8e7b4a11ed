"""Seed 000 (TensorFlow CIFAR-10 blog): four conv+BN stages down, dense+BN and six convT+BN up.

Each stage is conv (or convT) 3x3 'same' -> relu -> BatchNorm, as in the seed
(activation before normalisation), with Keras' BatchNorm defaults.
"""

from __future__ import annotations

from torch import nn

from ..layers import Flatten, Reshape, conv_same, deconv_same, glorot_init, keras_batchnorm, require_divisible
from ..registry import DECODERS, ENCODERS


def _stage(layer: nn.Module, channels: int) -> list[nn.Module]:
    return [layer, nn.ReLU(), keras_batchnorm(channels)]


@ENCODERS.register("cifar128")
def encoder(image_shape: tuple[int, int, int], out_features: int) -> nn.Module:
    c, _, _ = image_shape
    h16, w16 = require_divisible("cifar128", image_shape, 16)
    layers: list[nn.Module] = []
    for c_in, c_out in [(c, 64), (64, 128), (128, 256), (256, 512)]:
        layers += _stage(conv_same(c_in, c_out, stride=2), c_out)  # halves H and W
    return glorot_init(
        nn.Sequential(
            *layers,  # (B, 512, 2, 2)
            Flatten(),
            nn.Linear(512 * h16 * w16, out_features),
        )
    )


@DECODERS.register("cifar128")
def decoder(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int) -> nn.Module:
    h8, w8 = require_divisible("cifar128", image_shape, 8)
    layers: list[nn.Module] = [
        nn.Linear(latent_dim, 1024),
        nn.ReLU(),
        keras_batchnorm(1024, dims=1),
        nn.Linear(1024, 256 * h8 * w8),
        nn.ReLU(),
        keras_batchnorm(256 * h8 * w8, dims=1),
        Reshape(256, h8, w8),  # (B, 256, 4, 4)
    ]
    for c_in, c_out, stride in [(256, 256, 2), (256, 256, 1), (256, 128, 2), (128, 128, 1), (128, 64, 2)]:
        layers += _stage(deconv_same(c_in, c_out, stride=stride), c_out)
    layers += [deconv_same(64, 64), nn.ReLU(), deconv_same(64, out_channels)]  # (B, K, 32, 32)
    return glorot_init(nn.Sequential(*layers))

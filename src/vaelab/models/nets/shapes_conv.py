"""The convolutional VAE of the disentanglement studies, for `shapes-vae`: Burgess et al. 2018's layout as
Locatello et al. 2019 (disentanglement_lib) trained every model of their comparison with.

Encoder: conv 32 4x4 s2 -> conv 32 4x4 s2 -> conv 64 2x2 s2 -> conv 64 2x2 s2 (relu after each, 64 px to
4) -> dense 256 relu -> dense 2 * latent.
Decoder: dense 256 relu -> dense 64 * 4 * 4 relu -> convT 64 4x4 s2 -> convT 32 -> convT 32 (relu after each)
-> convT K 4x4 s2, back to 64 px. Any image side divisible by 16 works (the maps are side / 16 at the
bottom). Glorot-uniform weights and zero biases (TensorFlow's defaults, as disentanglement_lib).
"""

from __future__ import annotations

from torch import nn

from ..layers import BiasApartConvTranspose2d, Flatten, Reshape, glorot_init, require_divisible
from ..registry import DECODERS, ENCODERS


def _up(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    """4x4 transposed convolution, stride 2, 'same': doubles H and W."""
    return BiasApartConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)


@ENCODERS.register("shapes-conv")
def encoder(image_shape: tuple[int, int, int], out_features: int) -> nn.Module:
    c, _, _ = image_shape
    h16, w16 = require_divisible("shapes-conv", image_shape, 16)
    return glorot_init(
        nn.Sequential(
            nn.Conv2d(c, 32, 4, stride=2, padding=1),
            nn.ReLU(),  # (B, 32, H/2, W/2)
            nn.Conv2d(32, 32, 4, stride=2, padding=1),
            nn.ReLU(),  # (B, 32, H/4, W/4)
            nn.Conv2d(32, 64, 2, stride=2),
            nn.ReLU(),  # (B, 64, H/8, W/8)
            nn.Conv2d(64, 64, 2, stride=2),
            nn.ReLU(),  # (B, 64, H/16, W/16)
            Flatten(),
            nn.Linear(64 * h16 * w16, 256),
            nn.ReLU(),
            nn.Linear(256, out_features),
        )
    )


@DECODERS.register("shapes-conv")
def decoder(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int) -> nn.Module:
    h16, w16 = require_divisible("shapes-conv", image_shape, 16)
    return glorot_init(
        nn.Sequential(
            nn.Linear(latent_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 64 * h16 * w16),
            nn.ReLU(),
            Reshape(64, h16, w16),  # (B, 64, H/16, W/16)
            _up(64, 64),
            nn.ReLU(),  # (B, 64, H/8, W/8)
            _up(64, 32),
            nn.ReLU(),  # (B, 32, H/4, W/4)
            _up(32, 32),
            nn.ReLU(),  # (B, 32, H/2, W/2)
            _up(32, out_channels),  # (B, K, H, W)
        )
    )

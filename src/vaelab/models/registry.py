"""One registry per kind of model part; configs store the names."""

from __future__ import annotations

from ..registry import Registry

ENCODERS: Registry = Registry("encoder")
"""name -> factory(image_shape: (C, H, W), out_features: int) -> nn.Module mapping (B, C, H, W) to (B, out_features)."""

DECODERS: Registry = Registry("decoder")
"""name -> factory(image_shape: (C, H, W), latent_dim: int, out_channels: int) -> nn.Module mapping (B, D) to (B, out_channels, H, W)."""

POSTERIORS: Registry = Registry("posterior")
PRIORS: Registry = Registry("prior")
LIKELIHOODS: Registry = Registry("likelihood")


def register_encoder(name: str, factory=None):
    """Make a custom encoder usable by name in configs: `factory(image_shape, out_features) -> nn.Module`."""
    return ENCODERS.register(name, factory)


def register_decoder(name: str, factory=None):
    """Make a custom decoder usable by name: `factory(image_shape, latent_dim, out_channels) -> nn.Module`."""
    return DECODERS.register(name, factory)

OBJECTIVES: Registry = Registry("objective")
"""name -> factory(ObjectiveConfig) -> callable(model, x) -> dict of per-example terms."""

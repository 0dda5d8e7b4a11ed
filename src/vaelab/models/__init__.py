"""Models: composed VAEs and the registries of their parts."""

from . import likelihoods, nets, objectives  # noqa: F401  (registers the built-in parts)
from .latent import DiagGaussian
from .registry import (
    DECODERS,
    ENCODERS,
    LIKELIHOODS,
    OBJECTIVES,
    POSTERIORS,
    PRIORS,
    register_decoder,
    register_encoder,
)
from .vae import VAE, as_float_images, build_model, count_parameters

__all__ = [
    "DECODERS",
    "ENCODERS",
    "LIKELIHOODS",
    "OBJECTIVES",
    "POSTERIORS",
    "PRIORS",
    "VAE",
    "DiagGaussian",
    "as_float_images",
    "build_model",
    "count_parameters",
    "register_decoder",
    "register_encoder",
]

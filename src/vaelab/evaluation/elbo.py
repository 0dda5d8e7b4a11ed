"""The test ELBO and its parts, averaged over images, deterministic for a given seed."""

from __future__ import annotations

import torch

from ..models.vae import VAE
from .scores import elbo_terms_per_image


def evaluate_elbo(
    model: VAE, images: torch.Tensor, *, batch_size: int = 1000, dynamic_binarize: bool = False, seed: int = 0
) -> dict[str, float]:
    """Mean ELBO, recon (-log p(x|z)) and KL in nats per image over uint8 images (N, C, H, W).

    The per-image terms of `vaelab evaluate` (one seeded z per image, analytic KL), averaged:
    training's validation numbers and `vaelab evaluate`'s are the same computation.
    """
    terms = elbo_terms_per_image(model, images, batch_size=batch_size, seed=seed, dynamic_binarize=dynamic_binarize)
    return {"n": len(images), **{name: values.double().mean().item() for name, values in terms.items()}}

"""The VAE: composed from an encoder, a posterior, a prior, a decoder, a likelihood and an objective."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig, ObjectiveConfig
from .latent import DiagGaussian
from .registry import DECODERS, ENCODERS, LIKELIHOODS, OBJECTIVES, POSTERIORS, PRIORS


class VAE(nn.Module):
    """A variational autoencoder on images in [0, 1] of shape `image_shape` = (C, H, W).

    `forward(x)` returns the objective's named per-example terms (see
    `vaelab.models.objectives`). `encode`, `decode`, `sample` and
    `reconstruct` are the ways to use a trained model.
    """

    def __init__(self, *, encoder: nn.Module, decoder: nn.Module, posterior, prior, likelihood,
                 objective, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.posterior = posterior
        self.prior = prior
        self.likelihood = likelihood
        self.objective = objective
        self.image_shape = tuple(image_shape)

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.objective(self, x)

    def encode(self, x: torch.Tensor) -> DiagGaussian:
        """q(z|x) for images (B, C, H, W), float in [0, 1] or uint8."""
        return self.posterior(self.encoder(as_float_images(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean image for latents (B, D): (B, C, H, W) in [0, 1]."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n new images (n, C, H, W): z ~ N(0, temperature^2 I), shown as the likelihood's mean."""
        z = self.prior.sample(n, device="cpu", generator=generator).to(self.device) * temperature
        return self.decode(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, sample_z: bool = False) -> torch.Tensor:
        """Decode each image's posterior mean (or a sampled z): (B, C, H, W) in [0, 1]."""
        q = self.encode(x.to(self.device))
        return self.decode(q.rsample() if sample_z else q.mu)


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 images become floats in [0, 1]; floats pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def build_model(model: ModelConfig, objective: ObjectiveConfig, image_shape: tuple[int, int, int]) -> VAE:
    """Build a VAE from its config, looking each part up in its registry."""
    c = image_shape[0]
    posterior = POSTERIORS[model.posterior](model.latent_dim)
    likelihood = LIKELIHOODS[model.likelihood](sigma=model.sigma)
    return VAE(
        encoder=ENCODERS[model.encoder](tuple(image_shape), posterior.param_count),
        decoder=DECODERS[model.decoder](tuple(image_shape), model.latent_dim, c * likelihood.params_per_channel),
        posterior=posterior,
        prior=PRIORS[model.prior](model.latent_dim),
        likelihood=likelihood,
        objective=OBJECTIVES[objective.name](objective),
        image_shape=image_shape,
    )


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm's scale and shift count; its running statistics do not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

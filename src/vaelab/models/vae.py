"""The VAE: composed from an encoder, a posterior, a prior, a decoder, a likelihood and an objective."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import checks
from ..config import ModelConfig, ObjectiveConfig
from ..errors import VaelabError
from . import noise
from .latent import DiagGaussian
from .registry import DECODERS, ENCODERS, LIKELIHOODS, OBJECTIVES, POSTERIORS, PRIORS


class VAE(nn.Module):
    """A variational autoencoder on images in [0, 1] of shape `image_shape` = (C, H, W).

    `forward(x)` returns the objective's named per-example terms (see
    `vaelab.models.objectives`). `encode`, `decode`, `sample` and
    `reconstruct` are the ways to use a trained model. They refuse float
    pixels outside [0, 1] unless `check_pixels=False` (a model of other
    data, such as the linear-Gaussian reference model on real numbers).
    """

    def __init__(
        self,
        *,
        encoder: nn.Module,
        decoder: nn.Module,
        posterior,
        prior,
        likelihood,
        objective,
        image_shape: tuple[int, int, int],
        check_pixels: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.posterior = posterior
        self.prior = prior
        self.likelihood = likelihood
        self.objective = objective
        self.image_shape = tuple(image_shape)
        self.check_pixels = check_pixels

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective's per-example terms for images (B, C, H, W), float in [0, 1] or uint8."""
        return self.objective(self, as_float_images(x))  # the objective's `encode` checks the pixels

    def encode(self, x: torch.Tensor) -> DiagGaussian:
        """q(z|x) for images (B, C, H, W), float in [0, 1] or uint8; other pixel values are refused."""
        # vaelab's training step feeds batches converted from uint8, in [0, 1] by construction: checking
        # them would cost a host sync per step on a GPU
        trusted = not self.check_pixels or noise.in_training_step()
        x = as_float_images(x) if trusted else checked_images(x)
        return self.posterior(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean image for latents (B, D): (B, C, H, W) in [0, 1]."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n new images (n, C, H, W): z ~ N(0, temperature^2 I), shown as the likelihood's mean.

        Decoded SAMPLE_BATCH at a time, so the memory needed is the images' own
        (twice: the pieces and the whole); an `n` whose images cannot fit is refused.
        """
        checks.whole("n", n, low=0)
        checks.temperature("temperature", temperature)
        pixels = math.prod(self.image_shape)
        checks.memory(
            f"{n} samples of {'x'.join(map(str, self.image_shape))}",
            n * (2 * pixels + self.latent_dim) * checks.FLOAT32_BYTES,
        )
        if n == 0:
            return torch.empty(0, *self.image_shape, device=self.device)
        z = self.prior.sample(n, device="cpu", generator=generator).to(self.device) * temperature
        return torch.cat([self.decode(part) for part in z.split(SAMPLE_BATCH)])

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, sample_z: bool = False) -> torch.Tensor:
        """Decode each image's posterior mean (or a sampled z): (B, C, H, W) in [0, 1]."""
        q = self.encode(x.to(self.device))
        return self.decode(q.rsample() if sample_z else q.mu)


SAMPLE_BATCH = 1024  # latents decoded at once by `VAE.sample`


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 images become floats in [0, 1]; floats pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def checked_images(x: torch.Tensor) -> torch.Tensor:
    """`as_float_images`, refusing anything but uint8 or float pixels in [0, 1] (one aminmax, one host sync)."""
    if not isinstance(x, torch.Tensor):
        raise VaelabError(f"images must be a tensor (B, C, H, W), got {type(x).__name__}")
    if x.dtype == torch.uint8:
        return as_float_images(x)
    if not x.is_floating_point():
        raise VaelabError(f"images must be uint8 or floating point, got {x.dtype}")
    if x.numel():
        low, high = torch.stack(torch.aminmax(x)).tolist()  # NaN anywhere makes both NaN
        if not (low >= 0 and high <= 1):
            raise VaelabError(f"pixels must be in [0, 1] (floats) or uint8; got values from {low:g} to {high:g}")
    return x


def build_model(model: ModelConfig, objective: ObjectiveConfig, image_shape: tuple[int, int, int]) -> VAE:
    """Build a VAE from its config, looking each part up in its registry.

    The encoder and decoder are then tried once on zeros (see `check_shapes`),
    so a network that does not fit the image shape or the latent size is a
    one-line error here, before any run directory or training.
    """
    c = image_shape[0]
    posterior = POSTERIORS[model.posterior](model.latent_dim)
    likelihood = LIKELIHOODS[model.likelihood](sigma=model.sigma, mixtures=model.mixtures)
    vae = VAE(
        encoder=ENCODERS[model.encoder](tuple(image_shape), posterior.param_count),
        decoder=DECODERS[model.decoder](tuple(image_shape), model.latent_dim, likelihood.out_channels(c)),
        posterior=posterior,
        prior=PRIORS[model.prior](model.latent_dim),
        likelihood=likelihood,
        objective=OBJECTIVES[objective.name](objective),
        image_shape=image_shape,
    )
    check_shapes(vae, model)
    return vae


def check_shapes(vae: VAE, model: ModelConfig, batch: int = 2) -> None:
    """Run the encoder on zero images and the decoder on zero latents and compare their outputs with what
    the posterior and the likelihood read; a mismatch, or a network that fails on these inputs, is a
    VaelabError naming the part, the expected and the actual shapes."""
    c, h, w = vae.image_shape
    images = "x".join(map(str, vae.image_shape))
    _try_part(
        "encoder",
        model.encoder,
        vae.encoder,
        torch.zeros(batch, c, h, w),
        f"{images} images",
        (batch, vae.posterior.param_count),
        f"the {model.posterior} posterior of latent_dim {model.latent_dim}",
    )
    _try_part(
        "decoder",
        model.decoder,
        vae.decoder,
        torch.zeros(batch, model.latent_dim),
        f"latent_dim {model.latent_dim}",
        (batch, vae.likelihood.out_channels(c), h, w),
        f"the {model.likelihood} likelihood of {images} images",
    )


def _try_part(
    part: str, name: str, net: nn.Module, x: torch.Tensor, given: str, expected: tuple[int, ...], reader: str
) -> None:
    """`net(x)` once in eval mode (BatchNorm's statistics stay untouched), its output shape checked."""
    modes = {m: m.training for m in net.modules()}  # restored one by one: a factory may freeze some parts
    net.eval()
    try:
        with torch.no_grad():
            out = net(x)
    except Exception as e:  # noqa: BLE001 (a custom network can fail in any way on inputs it was not made for)
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise VaelabError(f"{part} {name!r} fails on {given} (a batch of {len(x)}): {reason}") from None
    finally:
        for m, training in modes.items():
            m.training = training
    actual = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if actual != expected:
        raise VaelabError(
            f"{part} {name!r} returns {actual} for {given} (a batch of {len(x)}); {reader} needs {expected}"
        )


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm's scale and shift count; its running statistics do not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

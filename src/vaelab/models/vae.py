"""The VAE: composed from an encoder, a posterior, a prior, a decoder, a likelihood and an objective."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch
from torch import nn

from .. import checks
from ..config import ModelConfig, ObjectiveConfig
from ..errors import VaelabError
from . import noise
from .expost import ExPostGaussian
from .latent import DiagGaussian, SingleGroup, Trace
from .registry import DECODERS, ENCODERS, LIKELIHOODS, OBJECTIVES, POSTERIORS, PRIORS


class VAE(nn.Module):
    """A variational autoencoder on images in [0, 1] of shape `image_shape` = (C, H, W).

    `forward(x)` returns the objective's named per-example terms (see
    `vaelab.models.objectives`), computed from `trace(x)`, the pass through
    the latent groups (one for a single latent; several for a hierarchy,
    whose decoder makes the pass: see `vaelab.models.latent`). `encode`,
    `decode`, `sample` and `reconstruct` are the ways to use a trained model.
    They refuse float pixels outside [0, 1] unless `check_pixels=False` (a
    model of other data, such as the linear-Gaussian reference model on real
    numbers).
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
    def top_down(self):
        """The latents' pass: the decoder itself for a hierarchy (`nets/hvae.TopDown`), else the one-group
        `SingleGroup` of this VAE's posterior, prior and decoder. Both make a `Trace`."""
        return self.decoder if is_top_down(self.decoder) else SingleGroup(self.posterior, self.prior, self.decoder)

    @property
    def group_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Each latent group's layout, top-down: ((D,),) for a single latent, (C, h, w) per group of a hierarchy."""
        return self.top_down.group_shapes

    @property
    def levels(self) -> list[int]:
        """How many top groups reach down to the end of each resolution, top first: [2, 4, 6, 8] for 2 groups at
        each of 4 resolutions; [1] for a single latent. `conditional_sample` keeps that many."""
        shapes = self.group_shapes
        return [i + 1 for i in range(len(shapes)) if i + 1 == len(shapes) or shapes[i][-1] != shapes[i + 1][-1]]

    @property
    def latent_dim(self) -> int:
        """The top group's size: what `encode` returns and `decode` takes (all of it for a single latent)."""
        return math.prod(self.group_shapes[0])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective's per-example terms for images (B, C, H, W), float in [0, 1] or uint8."""
        return self.objective(self, as_float_images(x))  # the objective's `trace` checks the pixels

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Images as floats in [0, 1]; pixels outside are refused (see `checked_images`)."""
        # vaelab's training step feeds batches converted from uint8, in [0, 1] by construction: checking
        # them would cost a host sync per step on a GPU
        trusted = not self.check_pixels or noise.in_training_step()
        return as_float_images(x) if trusted else checked_images(x)

    def trace(
        self,
        x: torch.Tensor,
        *,
        k: int | None = None,
        eps: Sequence[torch.Tensor] | None = None,
        mean: bool = False,
    ) -> Trace:
        """The posterior pass for images x: every latent group's q, p and z, and the decoder's output.

        z = q's mean at every group (`mean`), mu + sigma * eps[l] for given noise, or drawn (`k` samples per
        image: every tensor then has a sample dim in front).
        """
        return self.top_down.posterior_pass(self.encoder(self.images(x)), k=k, eps=eps, mean=mean)

    def encode(self, x: torch.Tensor) -> DiagGaussian:
        """q(z|x) for images (B, C, H, W), float in [0, 1] or uint8; other pixel values are refused.
        For a hierarchy: the top group's q(z_1|x)."""
        return self.top_down.top_posterior(self.encoder(self.images(x)))

    def decode(
        self,
        z: torch.Tensor,
        *,
        temperature: float | Sequence[float] = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The likelihood's mean image for top latents (B, D): (B, C, H, W) in [0, 1]. For a hierarchy the
        lower groups are drawn from their priors at `temperature` (one for all, or one per lower group; 0: the
        priors' means, the same image each time), with noise from `generator`."""
        lower = len(self.group_shapes) - 1
        temperatures = list(temperature) if isinstance(temperature, list | tuple) else [temperature] * lower
        return self.likelihood.mean(self.top_down.prior_pass(z, temperatures, generator).out)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        temperature: float | Sequence[float] = 1.0,
        generator: torch.Generator | None = None,
        expost: ExPostGaussian | None = None,
    ) -> torch.Tensor:
        """n new images (n, C, H, W), shown as the likelihood's mean: z_1 ~ N(0, t^2 I), and for a hierarchy each
        lower group from its prior with its standard deviation times t. `temperature`: one t for every group,
        or one per group, top first (a shorter list repeats its last value for the groups below). With
        `expost` (`models.expost.fit_expost`), the top groups it covers come from that fitted Gaussian instead
        (its noise scaled by the first temperature) and the groups below from their priors.

        Decoded SAMPLE_BATCH at a time, so the memory needed is the images' own
        (twice: the pieces and the whole); an `n` whose images cannot fit is refused.
        """
        checks.whole("n", n, low=0)
        temperatures = self.temperatures(temperature)
        pixels = math.prod(self.image_shape)
        latents = sum(math.prod(shape) for shape in self.group_shapes)
        checks.memory(
            f"{n} samples of {'x'.join(map(str, self.image_shape))}",
            n * (2 * pixels + latents) * checks.FLOAT32_BYTES,
        )
        if n == 0:
            return torch.empty(0, *self.image_shape, device=self.device)
        if expost is not None:
            sizes = tuple(math.prod(shape) for shape in self.group_shapes[: expost.groups])
            if sizes != expost.sizes:
                raise VaelabError(
                    f"the ex-post Gaussian covers groups of {expost.sizes} dims; this model's are {sizes}"
                )
            tops = [z.to(self.device) for z in expost.draw(n, temperature=temperatures[0], generator=generator)]
            parts = [[z[i : i + SAMPLE_BATCH] for z in tops] for i in range(0, n, SAMPLE_BATCH)]
            lower = temperatures[expost.groups :]
            return torch.cat([self.likelihood.mean(self.top_down.prior_pass(p, lower, generator).out) for p in parts])
        z = self.top_prior.sample(n, device="cpu", generator=generator).to(self.device) * temperatures[0]
        lower = temperatures[1:]
        return torch.cat([self.decode(part, temperature=lower, generator=generator) for part in z.split(SAMPLE_BATCH)])

    def temperatures(self, temperature: float | Sequence[float]) -> list[float]:
        """One temperature per latent group, top first (checked), from one for all, or a list whose last value
        repeats for the groups below it."""
        groups = len(self.group_shapes)
        values = list(temperature) if isinstance(temperature, list | tuple) else [temperature]
        if not 1 <= len(values) <= groups:
            raise VaelabError(
                f"temperature: give one value, or at most one per latent group ({groups}), not {len(values)}"
            )
        values += values[-1:] * (groups - len(values))
        for t in values:
            checks.temperature("temperature", t)
        return [float(t) for t in values]

    @property
    def top_prior(self):
        """p(z_1): the prior of the top group (the only group of a single latent)."""
        return self.top_down.top_prior

    @torch.no_grad()
    def conditional_sample(
        self,
        x: torch.Tensor,
        keep: int,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """New images that share x's top `keep` latent groups: those at their posterior means, each group below
        drawn from its prior with its standard deviation times `temperature`, noise from `generator`: what the
        top of a hierarchy fixes and what its lower groups add (VDVAE, Child 2021, fig. 4). keep = every group:
        the reconstruction. (B, C, H, W) in [0, 1]."""
        groups = len(self.group_shapes)
        checks.whole("keep", keep, low=1, high=groups)
        checks.temperature("temperature", temperature)
        below = [float(temperature)] * (groups - keep)
        acts = self.encoder(self.images(x.to(self.device)))
        return self.likelihood.mean(self.top_down.conditional_pass(acts, keep, below, generator).out)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, sample_z: bool = False) -> torch.Tensor:
        """Decode each image's posterior means, every group's (or sampled latents): (B, C, H, W) in [0, 1]."""
        return self.likelihood.mean(self.trace(x.to(self.device), mean=not sample_z).out)


def is_top_down(decoder: nn.Module) -> bool:
    """Whether a decoder makes the latents' pass itself (a hierarchy's top-down network)."""
    return callable(getattr(decoder, "posterior_pass", None))


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

    The networks are then tried once on zeros (see `check_shapes`), so a
    network that does not fit the image shape or the latent size is a
    one-line error here, before any run directory or training.
    """
    c = image_shape[0]
    posterior = POSTERIORS[model.posterior](model.latent_dim)
    likelihood = LIKELIHOODS[model.likelihood](sigma=model.sigma, mixtures=model.mixtures)
    vae = VAE(
        encoder=_network(ENCODERS[model.encoder], model, tuple(image_shape), posterior.param_count),
        decoder=_network(
            DECODERS[model.decoder], model, tuple(image_shape), model.latent_dim, likelihood.out_channels(c)
        ),
        posterior=posterior,
        prior=PRIORS[model.prior](model.latent_dim),
        likelihood=likelihood,
        objective=_network(OBJECTIVES[objective.name], model, objective),  # `model=` for one that asks
        image_shape=image_shape,
    )
    check_shapes(vae, model)
    return vae


def _network(factory, model: ModelConfig, *args) -> nn.Module:
    """`factory(*args)`, with `model=` (the ModelConfig: width, depth, resolutions, groups) for a factory that
    declares that keyword."""
    try:
        wants_config = "model" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a callable without a signature Python can read
        wants_config = False
    return factory(*args, model=model) if wants_config else factory(*args)


def check_shapes(vae: VAE, model: ModelConfig, batch: int = 2) -> None:
    """Run the encoder on zero images and the decoder on zero latents and compare their outputs with what
    the posterior and the likelihood read; a mismatch, or a network that fails on these inputs, is a
    VaelabError naming the part, the expected and the actual shapes. A hierarchy's two halves are tried
    together, through one posterior pass."""
    c, h, w = vae.image_shape
    images = "x".join(map(str, vae.image_shape))
    likelihood_shape = (batch, vae.likelihood.out_channels(c), h, w)
    reader = f"the {model.likelihood} likelihood of {images} images"
    if is_top_down(vae.decoder):
        if model.encoder != model.decoder:
            raise VaelabError(
                f"decoder {model.decoder!r} is the top-down half of a hierarchy: it needs its bottom-up half, "
                f"encoder {model.decoder!r}, not {model.encoder!r}"
            )
        _try_part(
            "encoder and decoder",
            model.decoder,
            lambda x: vae.trace(x, mean=True).out,
            vae,
            torch.zeros(batch, c, h, w),
            f"{images} images",
            likelihood_shape,
            reader,
        )
        return
    _try_part(
        "encoder",
        model.encoder,
        vae.encoder,
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
        vae.decoder,
        torch.zeros(batch, model.latent_dim),
        f"latent_dim {model.latent_dim}",
        likelihood_shape,
        reader,
    )


def _try_part(
    part: str,
    name: str,
    run,
    net: nn.Module,
    x: torch.Tensor,
    given: str,
    expected: tuple[int, ...],
    reader: str,
) -> None:
    """`run(x)` once with `net` in eval mode (BatchNorm's statistics stay untouched), its output shape checked."""
    modes = {m: m.training for m in net.modules()}  # restored one by one: a factory may freeze some parts
    net.eval()
    try:
        with torch.no_grad():
            out = run(x)
    except VaelabError:
        raise
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

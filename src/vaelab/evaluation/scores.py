"""Per-image scores, batched, for evaluation and anomaly detection (uint8 images in, (N,) out).

Every function here runs under `torch.inference_mode()`, in eval mode, and
draws its random numbers from `seed` inside a forked RNG: the same seed gives
the same numbers, and the caller's random stream is left untouched.

Dynamically binarised data is binarised *once* (`binarize_once`, seeded)
before it is scored, so that the ELBO, the IWAE bound and the posterior
statistics of an image all refer to the same binary image. `progress` (a
`vaelab.progress.Reporter`) shows each pass's progress on standard error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..config import ObjectiveConfig
from ..models.objectives import ELBO
from ..models.vae import VAE
from ..progress import QUIET, Reporter
from ..runtime import batch_memory_format, is_channels_last, memory_format_for
from ..training.batches import Batches
from .iwae import iwae_bound

# Evaluation always uses the analytic KL: the same expectation as the Monte Carlo
# estimate some presets train with, without its variance.
_EVAL_ELBO = ELBO(ObjectiveConfig(kl="analytic", beta=1.0))


def binarize_once(images: torch.Tensor, seed: int) -> torch.Tensor:
    """One seeded dynamic binarisation: each pixel is on with probability pixel/255, kept as uint8 0/255."""
    g = torch.Generator().manual_seed(seed)
    return (torch.bernoulli(images.float().div(255.0), generator=g) * 255).to(torch.uint8)


@contextlib.contextmanager
def _seeded_eval(model: VAE, seed: int) -> Iterator[None]:
    """Eval mode, inference mode and a forked RNG seeded with `seed`; everything restored afterwards.

    On the CPU the 4-D weights are held channels-last meanwhile (`runtime.memory_format_for`):
    oneDNN then runs the (transposed) convolutions about twice as fast (cvae2's decoder:
    ~1,700 -> ~3,500 images/s on 2 cores). Values are unchanged; the layout is restored afterwards.
    """
    was_training = model.training
    cpu = model.device.type == "cpu"
    devices = [] if cpu else [model.device]
    model.eval()
    relayout = memory_format_for(model, model.device) == torch.channels_last and not is_channels_last(model)
    if relayout:
        model.to(memory_format=torch.channels_last)
    try:
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        if relayout:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)


def _prepared(images: torch.Tensor, dynamic_binarize: bool, seed: int) -> torch.Tensor:
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    return binarize_once(images, seed) if dynamic_binarize else images


def elbo_terms_per_image(
    model: VAE,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,
    seed: int = 0,
    dynamic_binarize: bool = False,
    progress: Reporter = QUIET,
) -> dict[str, torch.Tensor]:
    """The ELBO's terms per image, one z ~ q(z|x) each and the analytic KL: {'elbo', 'recon', 'kl'}, and for a
    hierarchy the KL of each group, {'kl_1', ...}: (N,) each, on CPU."""
    images = _prepared(images, dynamic_binarize, seed)
    names = ["elbo", "recon", "kl"] + (
        [f"kl_{i}" for i in range(1, len(model.group_shapes) + 1)] if len(model.group_shapes) > 1 else []
    )
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    with _seeded_eval(model, seed), progress.bar(len(images), "ELBO") as bar:
        for x in Batches(images, batch_size, device=model.device, memory_format=batch_memory_format(model)):
            terms = _EVAL_ELBO(model, x)
            for name, values in parts.items():
                values.append(terms[name].float().cpu())
            bar.update(len(x))
    return {name: torch.cat(values) for name, values in parts.items()}


def elbo_per_image(
    model: VAE,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,
    seed: int = 0,
    dynamic_binarize: bool = False,
    progress: Reporter = QUIET,
) -> torch.Tensor:
    """The ELBO of each image in nats (a lower bound on log p(x), negative): (N,) on CPU."""
    return elbo_terms_per_image(
        model, images, batch_size=batch_size, seed=seed, dynamic_binarize=dynamic_binarize, progress=progress
    )["elbo"]


def iwae_per_image(
    model: VAE,
    images: torch.Tensor,
    k: int,
    *,
    chunk: int | None = None,
    batch_size: int = 1000,
    seed: int = 0,
    dynamic_binarize: bool = False,
    progress: Reporter = QUIET,
) -> torch.Tensor:
    """The IWAE bound with `k` samples on log p(x) of each image in nats: (N,) on CPU.

    `chunk` bounds the (image, sample) pairs decoded at once (memory; default per device, see
    `iwae.default_chunk`);
    `batch_size` the images encoded at once. Cost is linear in k.
    """
    images = _prepared(images, dynamic_binarize, seed)
    out = []
    with _seeded_eval(model, seed), progress.bar(len(images), f"IWAE k={k}") as bar:
        for x in Batches(images, batch_size, device=model.device, memory_format=batch_memory_format(model)):
            # each decoder pass moves the bar by its share of an image's k samples
            out.append(iwae_bound(model, x, k, chunk=chunk, done=lambda pairs: bar.update(pairs / k)).float().cpu())
    return torch.cat(out)


def active_dims(mu: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """(D,) bool: the dims of posterior means `mu` (N, D) whose variance over the images is above `threshold`
    (Burda et al. 2016's active units); none for no images."""
    if len(mu) == 0:
        return torch.zeros(mu.shape[1], dtype=torch.bool)
    return mu.double().var(dim=0, correction=0) > threshold


@dataclass(frozen=True)
class PosteriorStats:
    """What z = mu says about a model on a set of images (no random draws)."""

    mu: torch.Tensor  # (N, D) posterior means (a hierarchy's groups side by side, top first)
    kl_per_dim: torch.Tensor  # (D,) mean over images of KL(q(z_d|x, z_<l) || p(z_d|z_<l)), nats
    recon_mse: torch.Tensor  # (N,) mean squared error per image of the likelihood's mean at z = mu, [0, 1] units

    def active(self, threshold: float = 0.01) -> torch.Tensor:
        """Which latent dims' posterior mean varies over the data: Var_x(E_q[z_d]) > threshold (Burda et al.
        2016): (D,) booleans."""
        return active_dims(self.mu, threshold)

    def active_units(self, threshold: float = 0.01) -> int:
        """How many latent dims are active (`active`)."""
        return int(self.active(threshold).sum())

    def active_units_per_group(self, dims: list[int], threshold: float = 0.01) -> list[int]:
        """`active_units` of each latent group, for groups of `dims` dims side by side."""
        return [int(part.sum()) for part in self.active(threshold).split(dims)]


def posterior_stats(
    model: VAE,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,
    seed: int = 0,
    dynamic_binarize: bool = False,
    progress: Reporter = QUIET,
) -> PosteriorStats:
    """Posterior means, per-dimension KL and the reconstruction MSE via z = mu, over uint8 images.

    For a hierarchy z = mu at every group: each lower group's q and p are those given its parents' means
    (a deterministic pass; the ELBO's per-group KL instead averages over sampled parents)."""
    images = _prepared(images, dynamic_binarize, seed)
    mus, kl_sum, mses = [], None, []
    with _seeded_eval(model, seed), progress.bar(len(images), "posterior statistics") as bar:
        for x in Batches(images, batch_size, device=model.device, memory_format=batch_memory_format(model)):
            trace = model.trace(x, mean=True)
            kl = torch.cat([g.p.kl_per_dim(g.q) for g in trace.groups], dim=-1).double().sum(0)  # (D,)
            kl_sum = kl if kl_sum is None else kl_sum + kl
            mus.append(torch.cat([g.q.mu for g in trace.groups], dim=-1).float().cpu())
            mses.append((model.likelihood.mean(trace.out) - x).pow(2).flatten(1).mean(1).float().cpu())
            bar.update(len(x))
    return PosteriorStats(mu=torch.cat(mus), kl_per_dim=(kl_sum / len(images)).float().cpu(), recon_mse=torch.cat(mses))

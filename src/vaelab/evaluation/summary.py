"""Everything `vaelab evaluate` reports about a model on a set of images, as one flat dict.

Each number comes from one place: the ELBO from `models.objectives.ELBO`
(analytic KL), the importance-weighted NLL from `evaluation.iwae`, the
posterior statistics from `scores.posterior_stats`, the Fréchet distance from
`frechet` in the feature space of `classifier`. Every random draw is seeded.
Every mean over the images comes with its standard error, `<key>_se` (`mean_and_se`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..models.expost import ExPostGaussian
from ..models.registry import LIKELIHOODS
from ..models.vae import VAE
from ..progress import QUIET, Reporter
from .classifier import Classifier
from .frechet import frechet_distance
from .scores import elbo_terms_per_image, iwae_per_image, posterior_stats

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Var_x(E_q[z_d]) above this counts as active
MIN_FRECHET_N = 256  # two per feature dim at least, or the covariance estimate is meaningless


def mean_and_se(values: torch.Tensor | Sequence[float]) -> tuple[float, float | None]:
    """The mean of per-image values and its standard error, sample std (correction=1) / sqrt(n), both in
    float64; the standard error is None for fewer than two values. It measures the spread over the images,
    not the Monte Carlo error of each image's estimate."""
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = x.numel()
    se = float(x.std(correction=1)) / math.sqrt(n) if n >= 2 else None
    return float(x.mean()), se


def nats_per_bit_dim(image_shape: Sequence[int]) -> float:
    """One bit per dimension in nats per image, C·H·W·ln 2: a NLL in nats per image over this is in bits/dim."""
    return math.prod(image_shape) * math.log(2)


def bits_per_dim_note(binarize: str, likelihood: str) -> str | None:
    """None when a NLL of this data under this likelihood converts to bits/dim; else why not.

    Defined for a probability mass over the values the pixels take: binarised data under the
    Bernoulli, and 8-bit data (not binarised; grey or colour) under a likelihood marked `discrete_8bit`.
    """
    if getattr(LIKELIHOODS.find(likelihood), "discrete_8bit", False):
        if binarize != "none":  # refused by the config; a hand-made model may still get here
            return f"the {likelihood} likelihood is a probability of 8-bit pixels, not of binarised ones"
        return None
    if likelihood != "bernoulli":
        return (
            f"the {likelihood} likelihood is a density on continuous pixels, not a probability of "
            f"discrete images, so its NLL is not a code length"
        )
    if binarize == "none":
        return (
            "grey levels under a Bernoulli likelihood are not a normalised distribution "
            "(the BCE loss of the seeds), so its NLL is not a code length"
        )
    return None


@torch.no_grad()
def sample_frechet(
    model: VAE,
    reference: torch.Tensor,
    classifier: Classifier,
    *,
    seed: int = 0,
    batch_size: int = 1000,
    progress: Reporter = QUIET,
    expost: ExPostGaussian | None = None,
) -> float:
    """Fréchet distance between len(reference) samples of the model (the likelihood's mean at
    z ~ N(0, I), every group of a hierarchy from its prior, as `vaelab sample` shows them; with `expost`, the
    top groups it covers from that fitted Gaussian) and the reference images, in the classifier's features."""
    n = len(reference)
    generator = torch.Generator().manual_seed(seed)
    z = model.top_prior.sample(n, generator=generator)  # (n, D) on CPU; a hierarchy's lower groups draw later
    was_training = model.training
    model.eval()
    sampled, real = [], []  # features (b, F) of each batch
    with torch.inference_mode(), progress.bar(2 * n, f"Fréchet distance ({n:,} samples and images)") as bar:
        for i in range(0, n, batch_size):
            if expost is not None:
                samples = model.sample(min(batch_size, n - i), generator=generator, expost=expost).cpu()
            else:
                part = z[i : i + batch_size].to(model.device)
                samples = model.decode(part, temperature=1.0, generator=generator).cpu()  # (b, C, H, W) in [0, 1]
            sampled.append(classifier.features(samples, batch_size=batch_size))
            bar.update(len(samples))
        for i in range(0, n, batch_size):
            real.append(classifier.features(reference[i : i + batch_size], batch_size=batch_size))
            bar.update(len(real[-1]))
    model.train(was_training)
    return frechet_distance(torch.cat(sampled), torch.cat(real))


def evaluate_model(
    model: VAE,
    images: torch.Tensor,
    *,
    binarize: str = "none",
    likelihood: str = "bernoulli",
    k: int = 100,
    chunk: int | None = None,
    batch_size: int = 1000,
    seed: int = 0,
    classifier: Classifier | None = None,
    frechet_n: int = 5000,
    frechet_note: str | None = None,
    expost: ExPostGaussian | None = None,
    progress: Reporter = QUIET,
) -> dict[str, Any]:
    """The full evaluation of `model` on uint8 images (N, C, H, W) as the run sees them (binarised if
    static; `binarize="dynamic"` binarises them once, seeded). `k=0` skips the IWAE bound;
    `classifier=None` skips the Fréchet distance (give the reason as `frechet_note`); `expost` adds the
    Fréchet distance of samples whose top groups come from that fitted Gaussian; `progress` shows each
    pass's."""
    dynamic = binarize == "dynamic"
    n = len(images)
    c, h, w = images.shape[1:]
    common = dict(batch_size=batch_size, seed=seed, dynamic_binarize=dynamic, progress=progress)

    terms = elbo_terms_per_image(model, images, **common)
    out: dict[str, Any] = {"n": n, "seed": seed}
    for name in ("elbo", "recon", "kl"):
        out[name], out[f"{name}_se"] = mean_and_se(terms[name])
    out["k"] = k
    groups = len(model.group_shapes)
    if groups > 1:  # a hierarchy: the KL of each group, top first (posterior collapse shows here)
        per_group = [mean_and_se(terms[f"kl_{i}"]) for i in range(1, groups + 1)]
        out["kl_per_group"] = [mean for mean, _ in per_group]
        out["kl_per_group_se"] = [se for _, se in per_group]

    nll_iwae = nll_iwae_se = gap_se = None
    if k > 0:
        log_px = iwae_per_image(model, images, k, chunk=chunk, **common).double()  # (N,) IWAE bounds on log p(x)
        nll_iwae, nll_iwae_se = mean_and_se(-log_px)
        _, gap_se = mean_and_se(log_px - terms["elbo"].double())  # each image's -ELBO - NLL
    out["nll_iwae"], out["nll_iwae_se"] = nll_iwae, nll_iwae_se
    out["iwae_gap"] = None if nll_iwae is None else -out["elbo"] - nll_iwae  # >= 0: how much tighter IWAE is
    out["iwae_gap_se"] = gap_se

    note = bits_per_dim_note(binarize, likelihood)
    nll, nll_se, source = (
        (nll_iwae, nll_iwae_se, "iwae") if nll_iwae is not None else (-out["elbo"], out["elbo_se"], "elbo")
    )
    per_bit = nats_per_bit_dim((c, h, w))
    out["bits_per_dim"] = None if note else nll / per_bit
    out["bits_per_dim_se"] = None if note or nll_se is None else nll_se / per_bit
    out["bits_per_dim_from"] = None if note else source
    out["bits_per_dim_note"] = note

    stats = posterior_stats(model, images, **common)
    out["recon_mse"], out["recon_mse_se"] = mean_and_se(stats.recon_mse)
    out["latent_dim"] = stats.mu.shape[1]  # all groups' dims
    out["active_units"] = stats.active_units(ACTIVE_UNIT_THRESHOLD)
    if groups > 1:
        out["group_dims"] = [math.prod(shape) for shape in model.group_shapes]
        out["active_units_per_group"] = stats.active_units_per_group(out["group_dims"], ACTIVE_UNIT_THRESHOLD)
    out["kl_per_dim"] = [float(v) for v in stats.kl_per_dim]

    fd, fd_n = None, min(n, frechet_n)
    if classifier is not None and fd_n < MIN_FRECHET_N:
        classifier, frechet_note = None, f"needs at least {MIN_FRECHET_N} images, got {fd_n}"
    if classifier is not None:
        reference = images[:fd_n]  # the run's view of the data (its mean image when dynamically binarised)
        fd = sample_frechet(model, reference, classifier, seed=seed, batch_size=batch_size, progress=progress)
    if classifier is not None and expost is not None:
        out["frechet_distance_expost"] = sample_frechet(
            model, reference, classifier, seed=seed, batch_size=batch_size, progress=progress, expost=expost
        )
        out["expost_groups"], out["expost_n"] = expost.groups, expost.n
    out["frechet_distance"] = fd
    out["frechet_n"] = fd_n if fd is not None else None
    out["frechet_classifier"] = classifier.name if classifier is not None else None
    out["frechet_classifier_accuracy"] = classifier.accuracy if classifier is not None else None
    out["frechet_note"] = None if fd is not None else frechet_note
    return out

"""What the pictures of a run share: the model, its test images, their posteriors, the seed.

Everything is computed on first use and kept, so `vaelab plot` encodes the
test images once for all the pictures, and a picture that needs no data (the
loss curves) loads none. Each picture draws its random numbers from its own
generator seeded from `seed`, so it comes out the same whichever others are
drawn alongside it.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..config import RunConfig
from ..data import ImageSet
from ..errors import VaelabError
from ..evaluation.scores import active_dims
from ..evaluation.summary import ACTIVE_UNIT_THRESHOLD
from ..models.latent import DiagGaussian
from ..models.vae import VAE
from ..training.data import load_split
from ..training.rundir import RunDir
from ..training.runfiles import read_evals, saved_at

BATCH = 500  # images per forward pass: small batches are the fastest on a CPU


class Skip(Exception):
    """A picture that this run cannot have (no metrics yet, no per-epoch samples): the reason, one line."""


class DimFactors(NamedTuple):
    """What `vaelab evaluate --disentanglement` saved about which latent dim holds which generative factor
    (docs/evaluation.md, "Disentanglement"), read once for the report's rows and the traversals' labels."""

    names: list[str]  # the factors measured, in order
    best_dim: list[int | None]  # per factor: the dim with the most information about it (MIG's `mig_best_dim`)
    factor_of_dim: list[str | None]  # per dim: the factor it serves most (DCI); None: almost no importance

    def mig_factors(self, dim: int) -> list[str]:
        """The factors whose most informative dim (MIG) is `dim`."""
        return [name for name, best in zip(self.names, self.best_dim) if best == dim]


def dim_factors(evaluation: dict[str, Any]) -> DimFactors:
    """The factor keys of a saved evaluation, typed: eval.json checks only that they are JSON scalars or flat
    lists, so a value of another kind (another vaelab's, a damaged file) becomes None, or [] for a list."""

    def listed(key: str) -> list:
        value = evaluation.get(key)
        return value if isinstance(value, list) else []

    return DimFactors(
        names=[str(name) for name in listed("disentanglement_factors")],
        best_dim=[d if isinstance(d, int) and not isinstance(d, bool) else None for d in listed("mig_best_dim")],
        factor_of_dim=[f if isinstance(f, str) else None for f in listed("dci_factor_of_dim")],
    )


def matching_factors(
    evaluations: list[tuple[Path, dict[str, Any]]],
    *,
    top_dims: int,
    all_dims: int,
    weights: str,
    dataset: str,
    checkpoint_saved: str | None,
) -> tuple[DimFactors | None, str, str | None]:
    """Of a run's saved evaluations, newest first (`runfiles.read_evals`): the newest with DCI's factor of each
    dim that plausibly measured the model plotted, with when it was saved; else (None, "", why the newest with
    DCI does not fit, or None where no evaluation has DCI).

    An evaluation does not record which checkpoint it measured, so "plausibly" is: its `dci_factor_of_dim` has
    one entry per dim the traversals sweep (`top_dims`) and its `latent_dim` (all groups) is `all_dims`; it
    measured the same weights (`weights`: "ema" or "raw"; absent: "raw") of a model on the same dataset; and it
    was saved no earlier than the checkpoint file was written (`checkpoint_saved`, as `saved_at` gives times;
    None: not checked), so a run trained on after its evaluation does not show the old model's factors. A run
    copied without its files' times looks newer than its evaluations and loses the names, never gains wrong ones.
    """
    why = None
    for path, evaluation in evaluations:
        if not isinstance(evaluation.get("dci_factor_of_dim"), list):
            continue
        factors, when = dim_factors(evaluation), saved_at(path, evaluation)
        if len(factors.factor_of_dim) != top_dims:
            problem = f"it has {len(factors.factor_of_dim)} latent dims, the model {top_dims}"
        elif evaluation.get("latent_dim", all_dims) != all_dims:
            problem = f"it has {evaluation['latent_dim']} latent dims in all, the model {all_dims}"
        elif (evaluation.get("weights") or "raw") != weights:
            problem = f"it measured the {evaluation.get('weights') or 'raw'} weights, the picture the {weights} ones"
        elif evaluation.get("dataset", dataset) != dataset:
            problem = f"it measured a model on {evaluation.get('dataset')}, not {dataset}"
        elif checkpoint_saved is not None and when < checkpoint_saved:
            problem = "it was saved before the checkpoint (the run has trained since)"
        else:
            return factors, when, None
        why = why or f"{path.name}: {problem}"  # the newest's reason: the one a user would expect to be used
    return None, "", why


@dataclass
class PlotContext:
    run: RunDir
    model: VAE
    out: Path  # where the pictures go (RUN/plots)
    limit: int  # test images used
    seed: int
    data_dir: Any = None
    dims: tuple[int, int] | None = None  # the manifold's (and scatter's) two latent dims, else chosen
    latent_range: float | None = None  # manifold on [-R, R] instead of Gaussian quantiles
    log: Callable[[str], None] = print

    @property
    def config(self) -> RunConfig:
        return self.model.config

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.model.image_shape

    def generator(self, name: str) -> torch.Generator:
        """A CPU generator seeded from (seed, picture name): independent of which pictures are drawn."""
        # one 32-bit number: torch's CPU generator keeps only the low 32 bits of a seed
        return torch.Generator().manual_seed(zlib.crc32(f"{self.seed}/{name}".encode()))

    @functools.cached_property
    def test(self) -> ImageSet:
        """`limit` test images in a random order fixed by the seed (statically binarised when the run
        trained that way). Random, because some sets store their images sorted by class."""
        images = load_split(self.config.data, "test", self.data_dir)
        if len(images) == 0:
            raise VaelabError(f"{self.config.data.name} has no test images to plot")
        order = torch.randperm(len(images), generator=self.generator("test images"))
        return images.subset(order[: self.limit])

    def floats(self, indices: torch.Tensor | slice) -> torch.Tensor:
        """Test images as floats in [0, 1] on the CPU: (B, C, H, W)."""
        return self.test.images[indices].float().div(255.0)

    @functools.cached_property
    def posterior(self) -> DiagGaussian:
        """q(z|x) of every test image used (a hierarchy's top group), on the CPU: mu and logvar (N, D)."""
        mus, logvars = [], []
        with torch.inference_mode():
            for start in range(0, len(self.test), BATCH):
                q = self.model.encode(self.test.images[start : start + BATCH].to(self.model.device))
                mus.append(q.mu.cpu())
                logvars.append(q.logvar.cpu())
        return DiagGaussian(torch.cat(mus), torch.cat(logvars))

    @functools.cached_property
    def kl_per_dim(self) -> torch.Tensor:
        """Mean KL(q(z|x) || N(0, I)) of each latent dim over the test images, in nats: (D,)."""
        return self.posterior.kl_per_dim().mean(0)

    @functools.cached_property
    def active_dims(self) -> list[bool]:
        """Whether each latent dim is an active unit, as `vaelab evaluate` counts them (Burda et al. 2016: the
        variance over the test images of its posterior mean above ACTIVE_UNIT_THRESHOLD)."""
        return active_dims(self.posterior.mu, ACTIVE_UNIT_THRESHOLD).tolist()

    @functools.cached_property
    def dim_factors(self) -> tuple[DimFactors | None, str]:
        """The generative factor of each latent dim from the newest `vaelab evaluate --disentanglement` of this
        model (`matching_factors`), and when it was saved; (None, "") where there is none. Never raises: a
        damaged or mismatched evaluation costs the names, not the picture (one line to `log` says why)."""
        try:
            evaluations, _ = read_evals(self.run.path)  # damaged files: the report lists them
            checkpoint = self.run.checkpoint_path
            saved = (
                datetime.fromtimestamp(checkpoint.stat().st_mtime).isoformat(timespec="seconds")
                if checkpoint.is_file()
                else None
            )
        except (VaelabError, OSError) as e:
            self.log(f"no factor names on the traversals: {e}")
            return None, ""
        factors, when, why = matching_factors(
            evaluations,
            top_dims=self.model.latent_dim,
            all_dims=sum(math.prod(shape) for shape in self.model.group_shapes),
            weights=getattr(self.model, "weights", "raw"),
            dataset=self.config.data.name,
            checkpoint_saved=saved,
        )
        if why:
            self.log(f"no factor names on the traversals: the disentanglement evaluation {why}")
        return factors, when

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded means of (top) latents (B, D) as images (B, C, H, W) in [0, 1], on the CPU; a hierarchy's
        lower groups at their priors' means (`VAE.decode`)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(z), BATCH):
                out.append(self.model.decode(z[start : start + BATCH].to(self.model.device)).float().cpu())
        return torch.cat(out)

    def reconstruct(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images x (B, C, H, W) in [0, 1] through the model: the likelihood's mean at every group's posterior
        mean, or, given a generator, at z ~ q(z|x) drawn with its noise (for a single latent the same as
        decoding mu + sigma * eps); on the CPU."""
        model, out = self.model, []
        with torch.inference_mode():
            for start in range(0, len(x), BATCH):
                part = x[start : start + BATCH].to(model.device)
                eps = None
                if generator is not None:
                    eps = [
                        torch.randn(len(part), math.prod(shape), generator=generator).to(model.device)
                        for shape in model.group_shapes
                    ]
                trace = model.trace(part, mean=eps is None, eps=eps)
                out.append(model.likelihood.mean(trace.out).float().cpu())
        return torch.cat(out)

    def class_name(self, index: int) -> str | None:
        """The class name of test image `index`, when the set has labels."""
        labels, names = self.test.labels, self.test.class_names
        if labels is None:
            return None
        label = int(labels[index])
        return names[label] if names is not None and label < len(names) else str(label)

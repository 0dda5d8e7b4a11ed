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
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..data import ImageSet
from ..errors import VaelabError
from ..models.latent import DiagGaussian
from ..models.vae import VAE
from ..training.data import load_split
from ..training.rundir import RunDir

BATCH = 500  # images per forward pass: small batches are the fastest on a CPU


class Skip(Exception):
    """A picture that this run cannot have (no metrics yet, no per-epoch samples): the reason, one line."""


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

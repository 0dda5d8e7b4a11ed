"""Observation models p(x|z): one object each, shared by training, evaluation and sampling.

A likelihood reads the decoder's raw output `out` (B, K*C, H, W) and gives
`log_prob(out, x)` summed over the pixels (B,), `mean(out)` (the image it
shows) and `sample(out)`. Decoders never apply an output activation
themselves: the likelihood owns the link.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .registry import LIKELIHOODS

PIXEL_DIMS = (-3, -2, -1)


@LIKELIHOODS.register("bernoulli")
class Bernoulli:
    """Bernoulli on logits: log p(x|z) = -BCE(sigmoid(out), x), summed over pixels.

    For x in {0, 1} this is a normalised likelihood. The seeds 002 and 004 also
    apply it to grey levels in [0, 1]; then it is their (unnormalised) BCE loss.
    """

    params_per_channel = 1

    def __init__(self, **_: object) -> None:
        pass

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if out.shape != x.shape:  # several samples per image
            out, x = torch.broadcast_tensors(out, x)
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(PIXEL_DIMS)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out.float())

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(self.mean(out), generator=generator)


@LIKELIHOODS.register("gaussian")
class Gaussian:
    """Gaussian with a fixed standard deviation sigma and mean sigmoid(out), in [0, 1] like the images.

    With sigma = 1, -log p(x|z) = 0.5 * sum (x - mean)^2 + (C*H*W/2) log(2 pi):
    seed 001's "half summed squared error" plus a constant. `link="identity"`
    makes the mean the raw output (a linear-Gaussian model has a closed-form p(x)).
    """

    params_per_channel = 1

    def __init__(self, sigma: float = 1.0, link: str = "sigmoid", **_: object) -> None:
        if link not in ("sigmoid", "identity"):
            raise ValueError(f"unknown link {link!r}")
        self.sigma = sigma
        self.link = link
        self._log_norm = math.log(sigma) + 0.5 * math.log(2 * math.pi)

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean(out)) / self.sigma
        return -(0.5 * z**2 + self._log_norm).sum(PIXEL_DIMS)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out.float()) if self.link == "sigmoid" else out.float()

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        m = self.mean(out)
        return m + self.sigma * torch.randn(m.shape, device=m.device, generator=generator)

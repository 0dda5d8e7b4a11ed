"""Training objectives. Each returns named per-example terms in nats; reduction happens in the loop.

Terms (all shape (B,)):
  recon = -log p(x|z)   (one z ~ q(z|x) per image)
  kl    = KL(q(z|x) || p(z)), analytic, or the single-sample estimate log q(z|x) - log p(z)
  elbo  = -(recon + kl)  a lower bound on log p(x): negative, e.g. -157
  loss  = recon + beta * kl   what the optimiser minimises (equals -elbo when beta = 1)
The KL is always reported before beta is applied.
"""

from __future__ import annotations

import torch

from ..config import ObjectiveConfig
from .registry import OBJECTIVES


@OBJECTIVES.register("elbo")
class ELBO:
    """The evidence lower bound (Kingma & Welling 2014, eq. 3 and 10), optionally beta-weighted."""

    def __init__(self, cfg: ObjectiveConfig) -> None:
        self.beta = cfg.beta
        self.analytic_kl = cfg.kl == "analytic"

    def __call__(self, model, x: torch.Tensor) -> dict[str, torch.Tensor]:
        q = model.encode(x)
        z = q.rsample()  # (B, D)
        recon = -model.likelihood.log_prob(model.decoder(z), x)
        if self.analytic_kl:
            kl = model.prior.kl(q)
        else:
            kl = q.log_prob(z) - model.prior.log_prob(z)  # the seed 003 estimator
        return self.terms(recon, kl)

    def terms(self, recon: torch.Tensor, kl: torch.Tensor) -> dict[str, torch.Tensor]:
        """The named terms from -log p(x|z) and the KL, each (B,)."""
        neg_elbo = recon + kl
        loss = neg_elbo if self.beta == 1 else recon + self.beta * kl  # at beta 1, two tensor operations fewer
        return {"loss": loss, "elbo": -neg_elbo, "recon": recon, "kl": kl}

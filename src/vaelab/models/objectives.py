"""Training objectives. Each returns named per-example terms in nats; reduction happens in the loop.

Terms (all shape (B,)):
  recon = -log p(x|z)   (one z ~ q(z|x) per image)
  kl    = KL(q(z|x) || p(z)), analytic, or the single-sample estimate log q(z|x) - log p(z)
  elbo  = -(recon + kl)  a lower bound on log p(x): negative, e.g. -157
  loss  = recon + beta * kl   what the optimiser minimises (equals -elbo when beta = 1)
The KL is always reported before beta (or free bits) is applied; `beta_at(step)` says which beta is in force.

Parts of the ELBO's loss (all off by default, which is the plain ELBO bit for bit):
  KL warm-up  beta rises linearly from `beta_start` to `beta` over the first `kl_warmup_steps` training steps
              (Sønderby et al. 2016); the step comes from the training step's context (`noise.current_step`),
              so `model(x)` outside training uses `beta`.
  free bits   the KL part of the loss is max(lambda, KL_j) per latent dim j (or per group), with KL_j averaged
              over the batch (Kingma et al. 2016, IAF, eq. 15). `kl` stays the true KL.
The IWAE objective (`iwae`, Burda et al. 2016) minimises -log (1/K) sum_k w_k instead.
"""

from __future__ import annotations

import math

import torch

from ..config import ObjectiveConfig
from . import noise
from .registry import OBJECTIVES


def importance_bound(log_w: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound log (1/K) sum_k w_k from log weights (K, B): (B,).

    log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x); for K = 1 this is the single-sample ELBO.
    The training objective `iwae` and the evaluation's NLL (`evaluation.iwae`) both use it.
    """
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


@OBJECTIVES.register("elbo")
class ELBO:
    """The evidence lower bound (Kingma & Welling 2014, eq. 3 and 10), optionally beta-weighted,
    with an optional KL warm-up and free bits (see the module's docstring)."""

    def __init__(self, cfg: ObjectiveConfig) -> None:
        self.beta = cfg.beta
        self.analytic_kl = cfg.kl == "analytic"
        self.beta_start = cfg.beta_start
        self.warmup_steps = cfg.kl_warmup_steps
        self.free_bits = cfg.free_bits
        self.free_bits_per = cfg.free_bits_per
        self.plain = not self.warmup_steps and not self.free_bits  # recon + beta * kl: the direct step's loss

    def beta_at(self, step: int | None) -> float:
        """The KL's weight in force at training step `step` (0-based); `beta` outside training (None)."""
        if step is None or step >= self.warmup_steps:
            return self.beta
        return self.beta_start + (self.beta - self.beta_start) * step / self.warmup_steps

    def __call__(self, model, x: torch.Tensor) -> dict[str, torch.Tensor]:
        q = model.encode(x)
        z = q.rsample()  # (B, D)
        recon = -model.likelihood.log_prob(model.decoder(z), x)
        if self.analytic_kl:
            kl = model.prior.kl(q)
        else:
            kl = q.log_prob(z) - model.prior.log_prob(z)  # the seed 003 estimator
        if self.plain:
            return self.terms(recon, kl)
        kl_loss = self.free_bits_kl(model.prior.kl_per_dim(q)) if self.free_bits else kl
        return self.terms(recon, kl, kl_loss=kl_loss, beta=self.beta_at(noise.current_step()))

    def free_bits_kl(self, kl_per_dim: torch.Tensor) -> torch.Tensor:
        """The KL part of the loss under free bits, per example: (B, D) -> (B,).

        Per dim: each dim whose KL, averaged over the batch (this process's rows under torchrun), is below
        `free_bits` counts `free_bits` nats for every example, a constant with no gradient; the others count
        their own KL. The batch mean is then sum_j max(lambda, mean_b KL_bj), IAF's eq. 15, and its gradient
        is the mean KL's where a dim is above lambda. Per group: the same with the whole latent as one
        group (there are no latent hierarchies yet), so the floor is `free_bits` nats in all.
        """
        if self.free_bits_per == "group":
            kl_per_dim = kl_per_dim.sum(-1, keepdim=True)  # (B, 1): one group
        above = kl_per_dim.detach().mean(0) > self.free_bits  # (D,) or (1,)
        return torch.where(above, kl_per_dim, torch.full_like(kl_per_dim, self.free_bits)).sum(-1)

    def terms(
        self,
        recon: torch.Tensor,
        kl: torch.Tensor,
        *,
        kl_loss: torch.Tensor | None = None,
        beta: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """The named terms from -log p(x|z) and the KL, each (B,); `kl_loss` (default `kl`) is the KL part of
        the loss and `beta` (default `self.beta`) its weight."""
        beta = self.beta if beta is None else beta
        neg_elbo = recon + kl
        if kl_loss is None and beta == 1:
            loss = neg_elbo  # at beta 1, two tensor operations fewer
        else:
            loss = recon + beta * (kl if kl_loss is None else kl_loss)
        return {"loss": loss, "elbo": -neg_elbo, "recon": recon, "kl": kl}


@OBJECTIVES.register("iwae")
class IWAE:
    """The importance-weighted bound (Burda et al. 2016) with K = `iwae_k` samples per image as the loss.

    loss = -log (1/K) sum_k w_k (`importance_bound`). `recon`, `kl` and `elbo` are the ELBO's terms for the
    first of the K samples (the KL analytic or single-sample, as `kl` says), so they read as the `elbo`
    objective's would. With K = 1 and the single-sample KL the loss equals the ELBO's.
    """

    def __init__(self, cfg: ObjectiveConfig) -> None:
        self.k = cfg.iwae_k
        self.analytic_kl = cfg.kl == "analytic"
        self.beta = 1.0  # the bound has no KL weight (`validate` refuses another beta)

    def beta_at(self, step: int | None) -> float:
        return self.beta

    def __call__(self, model, x: torch.Tensor) -> dict[str, torch.Tensor]:
        q = model.encode(x)
        z = q.rsample(self.k)  # (K, B, D), through the step's noise
        params = model.decoder(z.flatten(0, 1)).unflatten(0, z.shape[:2])  # (K, B, ...)
        log_px_z = model.likelihood.log_prob(params, x)  # (K, B), x broadcasts over the samples
        log_q_minus_p = q.log_prob(z) - model.prior.log_prob(z)  # (K, B)
        recon = -log_px_z[0]
        kl = model.prior.kl(q) if self.analytic_kl else log_q_minus_p[0]
        loss = -importance_bound(log_px_z - log_q_minus_p)
        return {"loss": loss, "elbo": -(recon + kl), "recon": recon, "kl": kl}

"""Training objectives. Each returns named per-example terms in nats; reduction happens in the loop.

Terms (all shape (B,)):
  recon = -log p(x|z)   (one z ~ q(z|x) per image)
  kl    = KL(q(z|x) || p(z)), analytic, or the single-sample estimate log q(z|x) - log p(z); for a hierarchy
          the sum over its groups of KL(q(z_l|x, z_<l) || p(z_l|z_<l)), each also a term `kl_<l>` (1 = top)
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
        trace = model.trace(x)  # one z ~ q per group: (B, D_l)
        recon = -model.likelihood.log_prob(trace.out, x)
        kls = [g.kl(self.analytic_kl) for g in trace.groups]  # analytic, or the seed 003 single-sample estimator
        kl = _total(kls)
        if self.plain:
            return self.terms(recon, kl, groups=kls)
        kl_loss = self.free_bits_kl([g.p.kl_per_dim(g.q) for g in trace.groups]) if self.free_bits else kl
        return self.terms(recon, kl, kl_loss=kl_loss, beta=self.beta_at(noise.current_step()), groups=kls)

    def free_bits_kl(self, per_dim: list[torch.Tensor]) -> torch.Tensor:
        """The KL part of the loss under free bits, per example, from each latent group's KL per dim (B, D_l): (B,).

        Per dim: each latent dim whose KL, averaged over the batch (this process's rows under torchrun), is
        below `free_bits` counts `free_bits` nats for every example, a constant with no gradient; the others
        count their own KL. The batch mean is then sum_j max(lambda, mean_b KL_bj), IAF's eq. 15, and its
        gradient is the mean KL's where a dim is above lambda. Per group: the same with each latent group's
        KL as one unit (a single latent is one group, so the floor is `free_bits` nats in all).
        """
        if self.free_bits_per == "group":
            units = torch.stack([kl.sum(-1) for kl in per_dim], dim=-1)  # (B, groups)
        else:
            units = per_dim[0] if len(per_dim) == 1 else torch.cat(per_dim, dim=-1)  # (B, sum of D_l)
        above = units.detach().mean(0) > self.free_bits
        return torch.where(above, units, torch.full_like(units, self.free_bits)).sum(-1)

    def terms(
        self,
        recon: torch.Tensor,
        kl: torch.Tensor,
        *,
        kl_loss: torch.Tensor | None = None,
        beta: float | None = None,
        groups: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The named terms from -log p(x|z) and the KL, each (B,); `kl_loss` (default `kl`) is the KL part of
        the loss and `beta` (default `self.beta`) its weight; `groups`, the KL of each latent group, become
        the terms kl_1, kl_2, ... where there are several."""
        beta = self.beta if beta is None else beta
        neg_elbo = recon + kl
        if kl_loss is None and beta == 1:
            loss = neg_elbo  # at beta 1, two tensor operations fewer
        else:
            loss = recon + beta * (kl if kl_loss is None else kl_loss)
        return {"loss": loss, "elbo": -neg_elbo, "recon": recon, "kl": kl, **group_terms(groups)}


def group_terms(kls: list[torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """{kl_1: ..., kl_L: ...} for a hierarchy's groups (1 = top); nothing for a single latent group."""
    return {f"kl_{i}": kl for i, kl in enumerate(kls, 1)} if kls and len(kls) > 1 else {}


def _total(parts: list[torch.Tensor]) -> torch.Tensor:
    """The sum of per-example terms, the one term itself when alone (a single latent's KL, bit for bit)."""
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)


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
        trace = model.trace(x, k=self.k)  # (K, B, ...), through the step's noise
        log_px_z = model.likelihood.log_prob(trace.out, x)  # (K, B), x broadcasts over the samples
        log_ratio = _total([g.log_ratio() for g in trace.groups])  # log p(z) - log q(z|x), over groups: (K, B)
        recon = -log_px_z[0]
        kls = [_first(g.kl(self.analytic_kl)) for g in trace.groups]
        kl = _total(kls)
        loss = -importance_bound(log_px_z + log_ratio)
        return {"loss": loss, "elbo": -(recon + kl), "recon": recon, "kl": kl, **group_terms(kls)}


def _first(kl: torch.Tensor) -> torch.Tensor:
    """The first sample's KL, (K, B) -> (B,); an analytic KL of a posterior that depends on x alone is (B,)."""
    return kl[0] if kl.dim() == 2 else kl

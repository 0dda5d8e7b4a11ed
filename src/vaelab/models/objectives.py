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

Disentangling objectives (single latent group; `elbo`, `recon`, `kl` stay the ELBO's, so validation compares):
  btcvae     beta-TCVAE (Chen et al. 2018): loss = recon + alpha * mi + beta * tc + gamma * dwkl, the KL split
             into index-code mutual information, total correlation and dimension-wise KL, estimated on the batch
             (`tc_decomposition`); alpha, beta, gamma are `mi_weight`, `tc_weight`, `dwkl_weight`.
  factorvae  FactorVAE (Kim & Mnih 2018): loss = -elbo + gamma * tc, the TC estimated by a discriminator
             (`tc_weight` is gamma) that the training step trains after each update (`auxiliary_step`).
An objective's `extra_terms` (btcvae: mi, tc, dwkl; factorvae: tc) are the terms beyond loss, elbo, recon and kl
that training sums and logs (steps.jsonl, metrics.jsonl as train_<name>).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig, ObjectiveConfig
from ..errors import VaelabError
from . import noise
from .latent import LOG_2PI, DiagGaussian
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


# --------------------------------------------------------------------------- disentangling objectives


def single_group(trace, objective: str):
    """The one latent group of a trace; a hierarchy is refused in one line."""
    if len(trace.groups) != 1:
        raise VaelabError(
            f"the {objective} objective needs a single latent group, not a hierarchy of {len(trace.groups)}: "
            f"use a single-latent encoder and decoder (e.g. --encoder resnet --decoder resnet)"
        )
    return trace.groups[0]


def tc_decomposition(
    q: DiagGaussian, z: torch.Tensor, log_pz: torch.Tensor, dataset_size: int, estimator: str = "mss"
) -> dict[str, torch.Tensor]:
    """The KL's three parts for each example of a batch (Chen et al. 2018, eq. 2), each (B,):

      mi   = log q(z_i|x_i) - log q(z_i)                 index-code mutual information
      tc   = log q(z_i) - sum_d log q(z_id)              total correlation
      dwkl = sum_d log q(z_id) - log p(z_i)              dimension-wise KL

    with z_i ~ q(z|x_i) (B, D) and log p(z_i) (B,). The aggregate posterior q(z) = (1/N) sum_n q(z|x_n) over the
    N = `dataset_size` training images, and its marginals q(z_d), are estimated from the batch:
    log q(z_i) ~ log sum_j w_ij q(z_i|x_j), with
      mws  (minibatch weighted sampling, Chen et al. sec. 4.1): w_ij = 1/(N B) for all j;
      mss  (minibatch stratified sampling, their app. C.2): w_ii = 1/N, w_ij = (N - 1)/(N (B - 1)) for j != i,
           unbiased for q(z_i) when the batch's other images are drawn from the other N - 1.
    mws's estimate is low by log N in every row's log q (its weights sum to 1/N), so its tc is
    (D - 1) log N above mss's on a batch of the whole data set; the gradients do not see that constant.
    So each example's terms depend on the rest of its batch (under torchrun: this process's rows of it).
    Whatever the weights, mi + tc + dwkl = log q(z_i|x_i) - log p(z_i), the single-sample KL, exactly.
    Memory: a (B, B, D) tensor.
    """
    b = z.shape[0]
    log_q_ij = -0.5 * ((z[:, None] - q.mu[None]) ** 2 * torch.exp(-q.logvar[None]) + q.logvar[None] + LOG_2PI)
    if estimator == "mws":
        log_w = torch.full((b, b), -math.log(dataset_size * b), dtype=z.dtype, device=z.device)
    else:
        other = math.log((dataset_size - 1) / (dataset_size * (b - 1))) if b > 1 and dataset_size > 1 else -math.inf
        log_w = torch.full((b, b), other, dtype=z.dtype, device=z.device)
        log_w.fill_diagonal_(-math.log(dataset_size))
    log_qz_given_x = log_q_ij.diagonal().sum(0)  # log q(z_i|x_i): the diagonal (D, B) summed over D
    log_qz = torch.logsumexp(log_q_ij.sum(-1) + log_w, dim=1)  # (B,)
    log_prod_qzd = torch.logsumexp(log_q_ij + log_w[..., None], dim=1).sum(-1)  # (B, D) -> (B,)
    return {"mi": log_qz_given_x - log_qz, "tc": log_qz - log_prod_qzd, "dwkl": log_prod_qzd - log_pz}


@OBJECTIVES.register("btcvae")
class BetaTCVAE:
    """beta-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"), with one sample per image:

    loss = recon + alpha * mi + beta * tc + gamma * dwkl   (alpha = `mi_weight`, beta = `tc_weight`,
    gamma = `dwkl_weight`; the paper's defaults alpha = gamma = 1, and beta = 1 is the ELBO with the
    single-sample KL, exactly, per example). The terms mi, tc and dwkl come from `tc_decomposition` with
    `tc_estimator` (mss or mws) and the training set's size `dataset_size`, which the trainer sets
    (`attach`); `elbo`, `recon` and `kl` are the ELBO's (the KL analytic or single-sample, as `kl` says).
    """

    extra_terms = ("mi", "tc", "dwkl")  # per-example terms the training loop sums and logs beside the ELBO's

    def __init__(self, cfg: ObjectiveConfig) -> None:
        self.alpha, self.beta_tc, self.gamma = cfg.mi_weight, cfg.tc_weight, cfg.dwkl_weight
        self.estimator = cfg.tc_estimator
        self.analytic_kl = cfg.kl == "analytic"
        self.beta = 1.0  # the KL itself has no weight here (`validate` refuses another beta)
        self.dataset_size: int | None = None  # N, the training split's size: set by `attach`

    def attach(self, model, dataset_size: int) -> None:
        """Check the model (one latent group) and take the training set's size N, before training."""
        if len(model.group_shapes) != 1:
            raise VaelabError(
                f"the btcvae objective needs a single latent group, not a hierarchy of {len(model.group_shapes)}"
            )
        self.dataset_size = dataset_size

    def beta_at(self, step: int | None) -> float:
        return self.beta

    def __call__(self, model, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.dataset_size is None:
            raise VaelabError(
                "the btcvae objective needs the training set's size: model.objective.attach(model, N) "
                "(vaelab's trainer does it)"
            )
        trace = model.trace(x)
        g = single_group(trace, "btcvae")  # z ~ q(z|x): (B, D)
        recon = -model.likelihood.log_prob(trace.out, x)
        kl = g.kl(self.analytic_kl)
        parts = tc_decomposition(g.q, g.z, g.p.log_prob(g.z), self.dataset_size, self.estimator)
        loss = recon + self.alpha * parts["mi"] + self.beta_tc * parts["tc"] + self.gamma * parts["dwkl"]
        return {"loss": loss, "elbo": -(recon + kl), "recon": recon, "kl": kl, **parts}


class Discriminator(nn.Module):
    """FactorVAE's discriminator: an MLP from z (B, D) to one logit per row, log D(z) / (1 - D(z)), where D(z)
    is the probability that z came from q(z) rather than from the product of its marginals.

    Kim & Mnih (2018, app.) use 6 layers of 1000 units with LeakyReLU(0.2) and a two-way softmax; one logit
    is the same classifier (softmax of (l, 0)). `depth` hidden layers of `width` units.
    """

    def __init__(self, latent_dim: int, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(latent_dim if i == 0 else width, width), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(width if depth else latent_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)  # (B,)


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Each latent dim of z (B, D) shuffled over the rows on its own: samples of the product of the marginals
    of the batch's q(z) (Kim & Mnih 2018, Alg. 1). The permutations come from the step's noise, so a
    resumed run draws the same ones."""
    keys = noise.standard_normal(tuple(z.shape), batch_dim=0, dtype=torch.float32, device=z.device)
    return z.gather(0, keys.argsort(dim=0))


@OBJECTIVES.register("factorvae")
class FactorVAE(nn.Module):
    """FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising"):

    loss = recon + kl + gamma * tc,  tc = log D(z) / (1 - D(z)) per example (gamma = `tc_weight`)

    with z ~ q(z|x) and D the `discriminator`, a submodule of the VAE (so its weights are in the model's
    state_dict and its checkpoint). The VAE's gradient does not reach D's weights; the training step then
    calls `auxiliary_step` with D's own optimiser (`auxiliary_optimizer`: Adam, lr `discriminator_lr`,
    betas (0.5, 0.9) as in the paper) to train D on this step's z (detached). The paper draws two batches;
    here one batch is split in halves, as common implementations do: D learns to tell the first half's z
    (label 1) from the second half's with every dim permuted over the rows (label 0).
    """

    extra_terms = ("tc",)  # summed and logged by the training loop; not disc_loss, absent for a batch of one

    def __init__(self, cfg: ObjectiveConfig, *, model: ModelConfig) -> None:
        super().__init__()
        self.gamma = cfg.tc_weight
        self.lr = cfg.discriminator_lr
        self.analytic_kl = cfg.kl == "analytic"
        self.beta = 1.0
        self.discriminator = Discriminator(model.latent_dim, cfg.discriminator_width, cfg.discriminator_depth)
        self.latents: torch.Tensor | None = None  # the z (B, D) of the last call in a training step, detached

    def attach(self, model, dataset_size: int) -> None:
        """Check the model before training: one latent group, of the size the discriminator takes."""
        shapes = model.group_shapes
        if len(shapes) != 1:
            raise VaelabError(f"the factorvae objective needs a single latent group, not a hierarchy of {len(shapes)}")

    def beta_at(self, step: int | None) -> float:
        return self.beta

    def auxiliary_optimizer(self) -> torch.optim.Optimizer:
        """The discriminator's optimiser (Kim & Mnih 2018: Adam, betas (0.5, 0.9))."""
        return torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=(0.5, 0.9))

    def forward(self, model, x: torch.Tensor) -> dict[str, torch.Tensor]:
        trace = model.trace(x)
        g = single_group(trace, "factorvae")  # z ~ q(z|x): (B, D)
        recon = -model.likelihood.log_prob(trace.out, x)
        kl = g.kl(self.analytic_kl)
        params = list(self.discriminator.parameters())
        for p in params:  # the VAE's loss moves the encoder, not D: no gradient for D's weights here
            p.requires_grad_(False)
        try:
            tc = self.discriminator(g.z.float()).float()  # fp32 under bf16 autocast too, as the other terms
        finally:
            for p in params:
                p.requires_grad_(True)
        if noise.in_training_step():
            self.latents = g.z.detach()
        neg_elbo = recon + kl
        return {"loss": neg_elbo + self.gamma * tc, "elbo": -neg_elbo, "recon": recon, "kl": kl, "tc": tc}

    def auxiliary_step(self, z: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        """One update of the discriminator on z (B, D) of this step: the first half against the second half
        permuted, cross-entropy averaged over both halves (the paper's 0.5 (CE(z) + CE(z_perm))). Returns the
        per-example `disc_loss` and `disc_accuracy` (B,) (the first half's rows scored as "from q(z)", the
        second's as "permuted"); nothing for a batch of one."""
        half = len(z) // 2
        if half == 0:
            return {}
        z = z.detach().float()
        pair = torch.cat([z[:half], permute_dims(z)[half:]])  # (B, D): the second half permuted per dim
        target = torch.cat([z.new_ones(half), z.new_zeros(len(z) - half)])
        with torch.enable_grad():
            logits = self.discriminator(pair)
            per_example = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            loss = 0.5 * (per_example[:half].mean() + per_example[half:].mean())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        correct = ((logits.detach() > 0) == (target > 0.5)).float()
        return {"disc_loss": per_example.detach(), "disc_accuracy": correct}

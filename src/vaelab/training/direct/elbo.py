"""The ELBO's terms and their gradients with respect to the encoder's and decoder's outputs.

The forward values come from the model's own parts (posterior, prior,
likelihood), so they are the objective's exactly; the gradients are written
out by hand, per example, for the parts that have them here: the diagonal
Gaussian posterior, the standard-normal prior, and the Bernoulli and Gaussian
likelihoods. `weight` is each example's weight in the minimised loss (1/B for
the batch mean).
"""

from __future__ import annotations

import torch

from ...models.latent import DiagGaussian, DiagonalGaussianPosterior, StandardNormal
from ...models.likelihoods import Bernoulli, Gaussian
from ...models.objectives import ELBO

Tensor = torch.Tensor


def _bernoulli_grad(lik: Bernoulli, out: Tensor, x: Tensor) -> Tensor:
    """d(-log p(x|z)) / d out, per pixel."""
    return torch.sigmoid(out.float()) - x


def _gaussian_grad(lik: Gaussian, out: Tensor, x: Tensor) -> Tensor:
    mean = lik.mean(out)
    grad = (mean - x) / lik.sigma**2
    return grad * mean * (1 - mean) if lik.link == "sigmoid" else grad


LIKELIHOOD_GRADS = {Bernoulli: _bernoulli_grad, Gaussian: _gaussian_grad}


def supported(model) -> bool:
    """Whether this model's objective, posterior, prior and likelihood all have their gradients here."""
    return (
        type(model.objective) is ELBO
        and model.objective.plain  # recon + beta * kl: no KL warm-up, no free bits
        and type(model.posterior) is DiagonalGaussianPosterior
        and type(model.prior) is StandardNormal
        and type(model.likelihood) in LIKELIHOOD_GRADS
    )


class Latent:
    """The posterior's sample and the KL, with what their backward needs."""

    def __init__(self, model, h: Tensor) -> None:
        self.q: DiagGaussian = model.posterior(h)
        self.z = self.q.rsample()
        self.objective: ELBO = model.objective
        q, z = self.q, self.z
        self.kl = model.prior.kl(q) if self.objective.analytic_kl else q.log_prob(z) - model.prior.log_prob(z)

    def backward(self, grad_z: Tensor, weight: float) -> Tensor:
        """The gradient with respect to the encoder's output h = (mu, log var), given dLoss/dz from the decoder."""
        q, z = self.q, self.z
        w = weight * self.objective.beta  # the KL's weight in the loss
        eps_std = z - q.mu  # sigma * eps; dz/dlogvar = eps_std / 2
        # as few tensor operations as the algebra allows: on (B, D) tensors each costs more than its arithmetic
        if self.objective.analytic_kl:  # KL = 0.5 sum(mu^2 + exp(lv) - 1 - lv)
            grad_mu = torch.add(grad_z, q.mu, alpha=w)
            grad_logvar = (grad_z * eps_std).add_(torch.exp(q.logvar), alpha=w).sub_(w).mul_(0.5)
        else:  # KL = log q(z) - log p(z), z = mu + sigma * eps
            e = eps_std * torch.exp(-q.logvar)  # (z - mu) / sigma^2 = d log q / d mu
            grad_mu = torch.add(grad_z, z - e, alpha=w)  # through z: the decoder's, plus w (z - e)
            grad_mu.add_(e, alpha=w)  # plus log q's explicit mu
            # through z (grad_mu - w e) * eps_std / 2, plus w (eps_std e / 2 - 1/2) explicitly
            grad_logvar = (eps_std * grad_mu).sub_(w).mul_(0.5)
        return torch.cat([grad_mu, grad_logvar], dim=-1)


def terms_and_grad(model, latent: Latent, out: Tensor, x: Tensor, weight: float) -> tuple[dict[str, Tensor], Tensor]:
    """The objective's per-example terms, and dLoss/d out (fp32) for the decoder's output `out`."""
    lik = model.likelihood
    terms = latent.objective.terms(-lik.log_prob(out, x), latent.kl)
    grad = LIKELIHOOD_GRADS[type(lik)](lik, out, x)  # a new tensor, scaled in place
    if grad.shape != out.shape:
        grad = grad.sum_to_size(out.shape)
    return terms, grad.mul_(weight)

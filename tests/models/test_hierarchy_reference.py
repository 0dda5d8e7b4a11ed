"""A two-group linear-Gaussian hierarchy through the real VAE: its log p(x), ELBO and KLs are known in closed form.

z1 ~ N(0, I), z2 | z1 ~ N(A z1 + a, diag(s2^2)), x | z2 ~ N(B z2 + b, sigma^2 I), so marginally
x ~ N(B a + b, B (A A^T + S2) B^T + sigma^2 I). The decoder below speaks the top-down protocol of
`nets/hvae.TopDown` (`group_shapes`, `top_prior`, `top_posterior`, `posterior_pass`, `prior_pass`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from vaelab.config import ObjectiveConfig
from vaelab.evaluation.iwae import iwae_bound, log_weights
from vaelab.models import noise
from vaelab.models.latent import DiagGaussian, DiagonalGaussianPosterior, GaussianPrior, Group, StandardNormal, Trace
from vaelab.models.likelihoods import Gaussian
from vaelab.models.objectives import ELBO, IWAE
from vaelab.models.vae import VAE, is_top_down

D1, D2, SHAPE, SIGMA = 2, 3, (1, 2, 2), 0.5
P = 4  # pixels


class LinearHierarchy(nn.Module):
    """The top-down half: q(z1|x) = N(W1 x + c1, e^lv1), q(z2|x, z1) = N(W2 x + R2 z1 + c2, e^lv2); priors as above."""

    group_shapes = ((D1,), (D2,))
    top_prior = StandardNormal(D1)

    def __init__(self, **tensors: torch.Tensor) -> None:
        super().__init__()
        for name, t in tensors.items():
            setattr(self, name, nn.Parameter(t.float(), requires_grad=False))

    def top_posterior(self, h: torch.Tensor) -> DiagGaussian:
        return DiagGaussian(h @ self.W1.T + self.c1, self.lv1.expand(len(h), D1))

    def _prior(self, z1: torch.Tensor) -> GaussianPrior:
        return GaussianPrior(DiagGaussian(z1 @ self.A.T + self.a, self.ls2.expand(len(z1), D2)))

    def _posterior(self, h: torch.Tensor, z1: torch.Tensor) -> DiagGaussian:
        return DiagGaussian(h @ self.W2.T + z1 @ self.R2.T + self.c2, self.lv2.expand(len(h), D2))

    def _out(self, z2: torch.Tensor) -> torch.Tensor:
        return (z2 @ self.B.T + self.b).unflatten(-1, SHAPE)

    def posterior_pass(self, h, *, k=None, eps=None, mean=False) -> Trace:
        """As TopDown's: k samples per image as k*B rows (sample-major), returned as (k, B, ...)."""
        rows = len(h)
        if eps is not None and eps[0].dim() == 3:
            k = eps[0].shape[0]
        if k is not None:
            h = h.repeat(k, 1)
        groups, z = [], None
        for i, (d,) in enumerate(self.group_shapes):
            q, p = (self.top_posterior(h), StandardNormal(D1)) if i == 0 else (self._posterior(h, z), self._prior(z))
            if mean:
                z = q.mu
            else:
                shape = (rows, d) if k is None else (k, rows, d)
                e = (
                    eps[i]
                    if eps is not None
                    else noise.standard_normal(shape, batch_dim=-2, dtype=q.mu.dtype, device=q.mu.device)
                )
                z = q.mu + q.std * e.reshape(q.mu.shape)
            groups.append(Group(q, p, z, (d,)))
        trace = Trace(tuple(groups), self._out(z))
        if k is None:
            return trace

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(0, (k, rows))

        def gaussian(g: DiagGaussian) -> DiagGaussian:
            return DiagGaussian(split(g.mu), split(g.logvar))

        return Trace(
            tuple(
                Group(gaussian(g.q), g.p if i == 0 else GaussianPrior(gaussian(g.p.dist)), split(g.z), g.shape)
                for i, g in enumerate(trace.groups)
            ),
            split(trace.out),
        )

    def prior_pass(self, z_top, temperatures=(), generator=None) -> Trace:
        p = self._prior(z_top)
        t = temperatures[0] if temperatures else 1.0
        z2 = p.dist.mu + t * p.dist.std * torch.randn(p.dist.mu.shape, generator=generator)
        return Trace((Group(None, StandardNormal(D1), z_top, (D1,)), Group(None, p, z2, (D2,))), self._out(z2))


def reference(exact: bool = True) -> tuple[VAE, MultivariateNormal]:
    """The model and the exact marginal of x (float64). `exact`: q is the true posterior, every factor diagonal:
    B has orthogonal columns (p(z2|x, z1) is diagonal) and z1 is rotated so that p(z1|x) is; otherwise q is off."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    A, a, ls2 = r(D2, D1), 0.5 * r(D2), 0.5 * r(D2) - 0.5
    B = torch.linalg.qr(r(P, D2))[0] * torch.tensor([2.0, 1.0, 0.7], dtype=torch.float64)
    b = r(P)
    A, a, ls2, B, b = (t.float().double() for t in (A, a, ls2, B, b))  # what the float32 model holds
    s2, eye = ls2.exp(), torch.eye(P, dtype=torch.float64)  # s2: variances
    G = B.T @ torch.linalg.inv(B @ torch.diag(s2) @ B.T + SIGMA**2 * eye) @ B  # z1's precision from x is A^T G A
    A = (A @ torch.linalg.eigh(A.T @ G @ A)[1]).float().double()  # z1 rotated (p(z1) is): A^T G A diagonal
    mu_x, cov_x = B @ a + b, B @ (A @ A.T + torch.diag(s2)) @ B.T + SIGMA**2 * eye
    W1 = A.T @ B.T @ torch.linalg.inv(cov_x)  # p(z1|x) = N(W1 (x - mu_x), (I + A^T G A)^-1), diagonal
    C1 = 1 / (1 + torch.diagonal(A.T @ G @ A))
    C2 = 1 / (1 / s2 + (B * B).sum(0) / SIGMA**2)  # p(z2|x, z1), diagonal as B^T B is
    W2, R2, c2 = C2[:, None] * B.T / SIGMA**2, C2[:, None] * A / s2[:, None], C2 * (a / s2 - B.T @ b / SIGMA**2)
    q = dict(W1=W1, c1=-W1 @ mu_x, lv1=C1.log(), W2=W2, R2=R2, c2=c2, lv2=C2.log())
    if not exact:  # means half a posterior std off (and off-weighted maps), variances 1.5 times the posterior's
        q = {name: t + 0.02 * r(*t.shape) for name, t in q.items() if name[0] in "WR"} | dict(
            c1=q["c1"] + 0.5 * C1.sqrt() * r(D1).sign(),
            c2=c2 + 0.5 * C2.sqrt() * r(D2).sign(),
            lv1=q["lv1"] + math.log(1.5),
            lv2=q["lv2"] + math.log(1.5),
        )
    decoder = LinearHierarchy(A=A, a=a, ls2=ls2, B=B, b=b, **q)
    model = VAE(
        encoder=nn.Flatten(),
        decoder=decoder,
        posterior=DiagonalGaussianPosterior(D1),
        prior=StandardNormal(D1),
        likelihood=Gaussian(SIGMA, link="identity"),
        objective=ELBO(ObjectiveConfig()),
        image_shape=SHAPE,
        check_pixels=False,  # real numbers, not pixels in [0, 1]
    )
    return model.eval(), MultivariateNormal(mu_x, cov_x)


def data(exact: MultivariateNormal, n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """n draws of x as float32 images (n, 1, 2, 2) and their exact log p(x) (float64)."""
    torch.manual_seed(1)
    x = exact.sample((n,)).float()
    return x.view(n, *SHAPE), exact.log_prob(x.double())


def hand_elbo(model: VAE, x: torch.Tensor, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
    """log p(x|z2) + log p(z1) + log p(z2|z1) - log q(z1|x) - log q(z2|x, z1) for noise e1, e2, by hand."""
    m, h = model.decoder, x.flatten(1)
    q1 = Normal(h @ m.W1.T + m.c1, (0.5 * m.lv1).exp())
    z1 = q1.loc + q1.scale * e1
    q2 = Normal(h @ m.W2.T + z1 @ m.R2.T + m.c2, (0.5 * m.lv2).exp())
    z2 = q2.loc + q2.scale * e2
    log_p = Normal(0.0, 1.0).log_prob(z1).sum(-1) + Normal(z1 @ m.A.T + m.a, (0.5 * m.ls2).exp()).log_prob(z2).sum(-1)
    log_px_z = Normal(z2 @ m.B.T + m.b, SIGMA).log_prob(h).sum(-1)
    return log_px_z + log_p - q1.log_prob(z1).sum(-1) - q2.log_prob(z2).sum(-1)


def test_the_model_is_a_top_down_hierarchy():
    """The reference plugs into the VAE as a hierarchy of two groups whose top prior is N(0, I)."""
    model, exact = reference()
    assert is_top_down(model.decoder) and model.group_shapes == ((D1,), (D2,)) and model.latent_dim == D1
    assert isinstance(model.trace(data(exact)[0]).groups[0].p, StandardNormal)
    assert model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, *SHAPE)


def test_the_exact_posterior_gives_every_log_weight_log_px():
    """With q the true posterior, w = p(x, z) / q(z|x) = p(x) for every z: IWAE at any K is log p(x)."""
    model, exact = reference()
    x, log_px = data(exact)
    torch.manual_seed(2)
    log_w = log_weights(model, x, 50).double()
    torch.testing.assert_close(log_w, log_px.expand(50, -1), atol=2e-4, rtol=1e-5)


def test_iwae_at_large_k_is_within_a_tenth_of_a_nat_of_the_exact_log_px():
    """Per image, for a posterior whose ELBO is visibly below log p(x) (by more than half a nat)."""
    model, exact = reference(exact=False)
    x, log_px = data(exact)
    torch.manual_seed(2)
    torch.testing.assert_close(iwae_bound(model, x, 20_000, chunk=20_000).double(), log_px, atol=0.1, rtol=0)
    elbo = torch.stack([iwae_bound(model, x, 1) for _ in range(50)]).mean(0).double()
    assert (log_px - elbo).min() > 0.5, log_px - elbo  # so the bound had work to do


def test_k1_is_the_monte_carlo_elbo():
    """IWAE at K=1, the ELBO objective's `elbo` (kl="mc") and the iwae objective's `loss` (K=1) are the hand-computed
    single-sample ELBO of the same noise: log_weights and the posterior pass draw (B, D_l) per group, in group order."""
    model, exact = reference(exact=False)
    x, _ = data(exact)
    torch.manual_seed(3)
    by_hand = hand_elbo(model, x, torch.randn(len(x), D1), torch.randn(len(x), D2))
    torch.manual_seed(3)
    torch.testing.assert_close(iwae_bound(model, x, 1), by_hand, atol=1e-4, rtol=1e-5)
    with torch.no_grad():
        torch.manual_seed(3)
        elbo = ELBO(ObjectiveConfig(kl="mc"))(model, x)
        torch.manual_seed(3)
        iwae = IWAE(ObjectiveConfig(name="iwae", iwae_k=1, kl="mc"))(model, x)
    torch.testing.assert_close(elbo["elbo"], by_hand, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(iwae["loss"], -by_hand, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(iwae["elbo"], by_hand, atol=1e-4, rtol=1e-5)


def test_each_groups_analytic_kl_is_torch_distributions():
    """Group.kl(analytic) and kl_per_dim of both groups, for one and for k samples, match kl_divergence; the
    objective's kl_1, kl_2 are those and kl is their sum."""
    model, exact = reference(exact=False)
    x, _ = data(exact)
    torch.manual_seed(4)
    terms = ELBO(ObjectiveConfig(kl="analytic"))(model, x)
    for k in (None, 3):
        torch.manual_seed(4)
        trace = model.trace(x, k=k)
        for i, g in enumerate(trace.groups, 1):
            q = Normal(g.q.mu, g.q.std)
            p = Normal(torch.zeros_like(g.z), 1.0) if i == 1 else Normal(g.p.dist.mu, g.p.dist.std)
            assert g.kl().shape == g.z.shape[:-1]
            torch.testing.assert_close(g.kl(analytic=True), kl_divergence(Independent(q, 1), Independent(p, 1)))
            torch.testing.assert_close(g.p.kl_per_dim(g.q), kl_divergence(q, p))
            if k is None:  # the objective's, from the same noise
                torch.testing.assert_close(terms[f"kl_{i}"], g.kl(analytic=True))
    torch.testing.assert_close(terms["kl"], terms["kl_1"] + terms["kl_2"])


def test_log_weights_do_not_depend_on_the_chunk():
    """The same seed gives the same (K, B) log weights whether images are split across passes or all in one."""
    model, exact = reference(exact=False)
    x, _ = data(exact)
    runs = []
    for chunk in (3, 1000):  # 1 sample of 3 images a pass; all 7 samples of all 5 images in one
        torch.manual_seed(5)
        runs.append(log_weights(model, x, 7, chunk=chunk))
    assert runs[0].shape == (7, len(x))
    torch.testing.assert_close(runs[0], runs[1], atol=1e-4, rtol=0)  # float32 rounding only; other noise: O(1) nats

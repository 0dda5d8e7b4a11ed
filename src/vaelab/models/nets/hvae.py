"""A hierarchical VAE in the family of VDVAE (Child 2021) and NVAE (Vahdat & Kautz 2020): `hvae`.

Encoder (bottom-up): `blocks.BottomUp`, the activations at each resolution.
Decoder (top-down, `TopDown`): from a learned constant at the lowest
resolution, `model.groups` latent groups per resolution, lowest first (or
`model.groups_per_resolution`, a count for each; at a count of 0, `model.depth`
residual blocks without latents); then a 1x1 convolution and a pixel shuffle
to the likelihood's parameters at the image's size (`blocks.Output`). Each
group l (`GroupBlock`), on the decoder's state s:

    p_l = N(mu_p, sigma_p)      from s (the top group: N(0, I), so the top latents read like a plain VAE's)
    q_l = N(mu_p + dmu, sigma_p * dsigma)   from [s, the encoder's activation at this resolution]
    s  <- s + f(s) + W z_l, then `model.depth` residual blocks

A group's latents are `model.latent_dim` channels on its resolution's map,
kept flat in the trace: (B, latent_dim * r * r). Stabilisers, each from its
paper: the posterior relative to the prior (NVAE, section 3.2), log-variances
soft-bounded by tanh (NVAE's soft clamp), the prior's last layer zero at
initialisation and residual branches scaled by 1/sqrt(blocks) (VDVAE).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...config import ModelConfig
from ...errors import VaelabError
from .. import noise
from ..blocks import Block, BottomUp, Output, blocks, branch_scale, check_resolutions, resample
from ..latent import DiagGaussian, GaussianPrior, Group, StandardNormal, Trace, soft_clamp
from ..registry import DECODERS, ENCODERS

LOGVAR_BOUND = 10.0  # |log sigma^2| stays below this: sigma between e^-5 and e^5


def _gaussian(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2C, r, r) -> mu and a raw log-variance, each (N, C*r*r) in fp32 (the loss is computed in fp32)."""
    mu, logvar = params.float().chunk(2, dim=1)
    return mu.flatten(1), logvar.flatten(1)


class GroupBlock(nn.Module):
    """One latent group at one resolution of the top-down pass (see the module's docstring)."""

    def __init__(self, width: int, channels: int, resolution: int, depth: int, scale: float, top: bool) -> None:
        super().__init__()
        self.top, self.shape = top, (channels, resolution, resolution)
        if not top:  # the prior's parameters and a feature added to the state (VDVAE's decoder block)
            self.prior_net = Block(width, 2 * channels + width, residual=False, scale=0.0)  # p = N(0, I) at first
        self.posterior_net = Block(2 * width, 2 * channels, residual=False)
        self.z_proj = nn.Conv2d(channels, width, 1)
        with torch.no_grad():
            self.z_proj.weight.mul_(scale)
        self.res = blocks(width, depth, scale)

    @property
    def dims(self) -> int:
        c, r, _ = self.shape
        return c * r * r

    def prior(self, state: torch.Tensor) -> tuple[StandardNormal | GaussianPrior, torch.Tensor | None]:
        """p(z_l | z_<l) from the state, and the feature the prior's network adds to the state."""
        if self.top:
            return StandardNormal(self.dims), None
        c = self.shape[0]
        out = self.prior_net(state)
        mu, logvar = _gaussian(out[:, : 2 * c])
        return GaussianPrior(DiagGaussian(mu, soft_clamp(logvar, LOGVAR_BOUND))), out[:, 2 * c :]

    def posterior(self, state: torch.Tensor, act: torch.Tensor, p: StandardNormal | GaussianPrior) -> DiagGaussian:
        """q(z_l | x, z_<l), parameterised relative to the prior (NVAE): its mean and log-variance are the
        prior's plus what the network says."""
        dmu, dlogvar = _gaussian(self.posterior_net(torch.cat([state, act], dim=1)))
        if isinstance(p, GaussianPrior):
            dmu, dlogvar = p.dist.mu + dmu, p.dist.logvar + dlogvar
        return DiagGaussian(dmu, soft_clamp(dlogvar, LOGVAR_BOUND))

    def merge(self, state: torch.Tensor, feature: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        """The state after this group: s + f(s) + W z, then the residual blocks."""
        z_map = self.z_proj(z.unflatten(1, self.shape).to(state.dtype))  # (B, D) -> (B, C, r, r)
        state = state + z_map if feature is None else state + feature + z_map
        return self.res(state)


class TopDown(nn.Module):
    """The top-down decoder of `hvae`: the latent groups and the output layer (see the module's docstring).

    The VAE calls it through the same methods as `latent.SingleGroup`:
    `top_posterior`, `posterior_pass`, `prior_pass` and `conditional_pass`.
    """

    def __init__(self, image_shape: tuple[int, int, int], channels: int, out_channels: int, model: ModelConfig):
        super().__init__()
        resolutions = check_resolutions("hvae", image_shape, model.resolutions)
        if channels > model.width:
            raise VaelabError(
                f"a latent group of the hvae networks is model.latent_dim = {channels} channels on a feature map of "
                f"model.width = {model.width}: it cannot be wider; lower --latent-dim or raise --width"
            )
        self.encoder_order = resolutions  # the encoder's activations, highest first
        counts = _group_counts(model, resolutions)
        steps = list(zip(resolutions[::-1], counts[::-1]))  # (resolution, groups), lowest resolution first
        layout = [r for r, n in steps for _ in range(n)]  # each latent group's resolution, top first
        self.plain_sizes = [r for r, n in steps if n == 0]  # resolutions of residual blocks alone, no latents
        scale = branch_scale(len(layout) * (model.depth + 1) + len(self.plain_sizes) * model.depth)
        self.start = nn.Parameter(torch.zeros(1, model.width, steps[0][0], steps[0][0]))
        self.groups = nn.ModuleList(
            GroupBlock(model.width, channels, r, model.depth, scale, top=i == 0) for i, r in enumerate(layout)
        )
        self.plain = nn.ModuleList(blocks(model.width, model.depth, scale) for _ in self.plain_sizes)
        group_ids, plain_ids = iter(range(len(layout))), iter(range(len(self.plain_sizes)))
        self.order: list[tuple[str, int]] = []  # the pass, lowest resolution first: ("group" | "plain", index)
        for _, n in steps:
            self.order += [("group", next(group_ids)) for _ in range(n)] if n else [("plain", next(plain_ids))]
        self.out = Output(model.width, out_channels, steps[-1][0], image_shape[-1])

    @property
    def group_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(g.shape for g in self.groups)

    @property
    def top_prior(self) -> StandardNormal:
        return StandardNormal(self.groups[0].dims)

    def _initial(self, rows: int) -> torch.Tensor:
        return self.start.expand(rows, -1, -1, -1)

    def _activation(self, acts: Sequence[torch.Tensor], group: GroupBlock) -> torch.Tensor:
        return acts[self.encoder_order.index(group.shape[-1])]

    def _plain(self, index: int, state: torch.Tensor) -> torch.Tensor:
        """Residual blocks without latents at a resolution given no groups."""
        return self.plain[index](resample(state, self.plain_sizes[index]))

    def top_posterior(self, acts: Sequence[torch.Tensor]) -> DiagGaussian:
        """q(z_1 | x): the top group's posterior, which depends on x alone."""
        top = self.groups[0]
        state = self._initial(acts[0].shape[0])  # shape[0], not len(): a symbolic batch size stays one in export
        return top.posterior(state, self._activation(acts, top), top.prior(state)[0])

    def posterior_pass(
        self,
        acts: Sequence[torch.Tensor],
        *,
        k: int | None = None,
        eps: Sequence[torch.Tensor] | None = None,
        mean: bool = False,
    ) -> Trace:
        """The trace of x's bottom-up activations `acts`: each z_l = mu (`mean`), mu + sigma * eps[l], or drawn
        through `noise` (k per image when k is given; then every tensor of the trace is (k, B, ...))."""
        b = len(acts[0])
        if eps is not None and eps[0].dim() == 3:
            k = eps[0].shape[0]
        if k is not None:
            acts = [a.repeat(k, 1, 1, 1) for a in acts]  # sample-major: (k*B, ...)

        def choose(i: int, block: GroupBlock, state: torch.Tensor, p) -> tuple[DiagGaussian, torch.Tensor]:
            q = block.posterior(state, self._activation(acts, block), p)
            if mean:
                return q, q.mu
            e = (
                eps[i]
                if eps is not None
                else noise.standard_normal(
                    (b, block.dims) if k is None else (k, b, block.dims),
                    batch_dim=-2,
                    dtype=q.mu.dtype,
                    device=q.mu.device,
                )
            )
            return q, q.mu + q.std * e.reshape(q.mu.shape)

        trace = self._walk(len(acts[0]), choose)
        return trace if k is None else _per_sample(trace, k, b)

    def prior_pass(
        self,
        z_top: torch.Tensor | Sequence[torch.Tensor],
        temperatures: Sequence[float] = (),
        generator: torch.Generator | None = None,
    ) -> Trace:
        """The trace from top latents z (n, D_1), or a list of the top groups' (one (n, D_l) each), the groups
        below drawn from their priors, the first of them at `temperatures[0]` and so on (1 where not given; 0:
        the prior's mean); noise from `generator` (CPU)."""
        given = [z_top] if isinstance(z_top, torch.Tensor) else list(z_top)

        def choose(i: int, block: GroupBlock, state: torch.Tensor, p) -> tuple[None, torch.Tensor]:
            if i < len(given):
                return None, given[i]
            return None, _prior_draw(p, temperatures, i - len(given), generator)

        return self._walk(given[0].shape[0], choose)

    def conditional_pass(
        self,
        acts: Sequence[torch.Tensor],
        keep: int,
        temperatures: Sequence[float] = (),
        generator: torch.Generator | None = None,
    ) -> Trace:
        """The trace of x's top `keep` groups at their posterior means, each group below drawn from its prior
        (group l at `temperatures[l - keep]`, 1 where not given); the lower groups' q is None."""

        def choose(i: int, block: GroupBlock, state: torch.Tensor, p) -> tuple[DiagGaussian | None, torch.Tensor]:
            if i < keep:
                q = block.posterior(state, self._activation(acts, block), p)
                return q, q.mu
            return None, _prior_draw(p, temperatures, i - keep, generator)

        return self._walk(len(acts[0]), choose)

    def _walk(self, rows: int, choose) -> Trace:
        """The top-down pass over `rows` rows: at each group, its prior from the state, then (q, z) =
        choose(index, group, state, prior), and z merged into the state (at a resolution without groups, its
        residual blocks); then the output layer."""
        state = self._initial(rows)
        groups = []
        for kind, i in self.order:
            if kind == "plain":
                state = self._plain(i, state)
                continue
            block = self.groups[i]
            state = resample(state, block.shape[-1])
            p, feature = block.prior(state)
            q, z = choose(i, block, state, p)
            state = block.merge(state, feature, z)
            groups.append(Group(q, p, z, block.shape))
        return Trace(tuple(groups), self.out(state))


def _prior_draw(
    p: GaussianPrior, temperatures: Sequence[float], j: int, generator: torch.Generator | None
) -> torch.Tensor:
    """z ~ N(mu, (t sigma)^2) from the prior of the j-th group drawn, t = temperatures[j] (1 where not given),
    the noise from `generator` (CPU); t = 0: the mean, with no draw (the exported (ONNX) decoder holds no
    random op)."""
    t = temperatures[j] if j < len(temperatures) else 1.0
    mu = p.dist.mu
    if not t:
        return mu
    eps = torch.randn(mu.shape, generator=generator).to(mu.device, mu.dtype)
    return mu + (t * p.dist.std) * eps


def _group_counts(model: ModelConfig, resolutions: tuple[int, ...]) -> tuple[int, ...]:
    """The latent groups at each resolution, highest first: `model.groups_per_resolution` (0: that resolution's
    residual blocks without latents, like NVAE's post-processing cells), else `model.groups` at every one;
    refused in one line when the counts do not match the resolutions or the lowest has none."""
    counts = model.groups_per_resolution
    if not counts:
        return (model.groups,) * len(resolutions)
    if len(counts) != len(resolutions):
        raise VaelabError(
            f"model.groups_per_resolution gives {len(counts)} counts ({', '.join(map(str, counts))}) for the "
            f"{len(resolutions)} resolutions {', '.join(map(str, resolutions))}: give one count per resolution, "
            "highest first (for example --resolutions 16,8,4,1 --groups-per-resolution 2,2,4,4)"
        )
    if not counts[-1]:
        raise VaelabError(
            f"model.groups_per_resolution ({', '.join(map(str, counts))}) gives the lowest resolution "
            f"({resolutions[-1]}) no latent group: the pass starts there, so it needs one (or leave that "
            "resolution out of --resolutions); a higher one may have 0 (residual blocks alone)"
        )
    return counts


def _per_sample(trace: Trace, k: int, b: int) -> Trace:
    """A trace of k*B rows (sample-major) as (k, B, ...)."""

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(0, (k, b))

    def gaussian(d: DiagGaussian) -> DiagGaussian:
        return DiagGaussian(split(d.mu), split(d.logvar))

    groups = tuple(
        Group(
            gaussian(g.q),
            GaussianPrior(gaussian(g.p.dist)) if isinstance(g.p, GaussianPrior) else g.p,
            split(g.z),
            g.shape,
        )
        for g in trace.groups
    )
    return Trace(groups, split(trace.out))


@ENCODERS.register("hvae")
def encoder(image_shape: tuple[int, int, int], out_features: int, *, model: ModelConfig) -> nn.Module:
    """The bottom-up half; `out_features` (the top posterior's size) is the top-down half's business."""
    return BottomUp(image_shape, model.width, model.depth, check_resolutions("hvae", image_shape, model.resolutions))


@DECODERS.register("hvae")
def decoder(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int, *, model: ModelConfig) -> nn.Module:
    return TopDown(image_shape, latent_dim, out_channels, model)

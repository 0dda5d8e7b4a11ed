"""Pictures made of decoded images: reconstructions, samples, the manifold, interpolations, traversals, and a
hierarchy's levels."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import VaelabError
from ..models.expost import ExPostGaussian
from ..models.vae import VAE
from .context import DimFactors, PlotContext, Skip
from .figures import Block, image_figure, save_figure
from .geometry import lerp, linear_grid, quantile_grid, rank_dims, slerp

RECON_COLS, RECON_GROUPS = 12, 2
SAMPLES = 64
PAIRS, STEPS = 4, 10
TRAVERSAL_DIMS, TRAVERSAL_STEPS, TRAVERSAL_LIMIT = 10, 11, 3.0
LEVEL_IMAGES, LEVEL_DRAWS = 8, 2


def plot_reconstructions(ctx: PlotContext, path: Path) -> Path:
    """Test originals over their reconstructions via z = μ and via a sampled z ~ q(z|x) (seed 004)."""
    n = min(RECON_COLS * RECON_GROUPS, len(ctx.test))
    ncol = min(RECON_COLS, n)
    x = ctx.floats(slice(0, n))
    via_mu, via_sample = ctx.reconstruct(x), ctx.reconstruct(x, ctx.generator("reconstructions"))
    blocks = []
    for start in range(0, n, ncol):
        part = slice(start, min(start + ncol, n))
        rows = [_pad(t[part], ncol) for t in (x, via_mu, via_sample)]
        blocks.append(Block(torch.cat(rows), ncol, ["original", "recon, z = μ", "recon, z ~ q(z|x)"]))
    fig = image_figure(blocks, title=f"{n} test images and their reconstructions")
    return save_figure(fig, path)


def prior_samples(
    model: VAE,
    n: int,
    *,
    seed: int,
    temperature: float | tuple[float, ...] = 1.0,
    expost: ExPostGaussian | None = None,
) -> torch.Tensor:
    """n images decoded from z ~ N(0, temperature² I) (the top groups from `expost` where given), the noise
    drawn from `seed` alone, as the likelihood's mean: (n, C, H, W) floats in [0, 1] on the CPU. `vaelab
    sample --seed S` and plots/samples.png "(seed S)" both draw through here, so they show the same images."""
    with torch.inference_mode():
        generator = torch.Generator().manual_seed(seed)
        images = model.sample(n, temperature=temperature, generator=generator, expost=expost)
    return images.float().cpu()


def plot_samples(ctx: PlotContext, path: Path) -> Path:
    """64 new images decoded from z ~ N(0, I): the same as `vaelab sample --seed S` for the same seed."""
    images = prior_samples(ctx.model, SAMPLES, seed=ctx.seed)
    groups = len(ctx.model.group_shapes)
    drawn = "z ~ N(0, I)" if groups == 1 else f"z_1 ~ N(0, I), the {groups - 1} groups below from their priors"
    fig = image_figure([Block(images, 8)], title=f"{SAMPLES} samples, {drawn} (seed {ctx.seed})")
    return save_figure(fig, path)


def manifold_dims(ctx: PlotContext) -> tuple[int, int] | tuple[int]:
    """The latent dims the manifold sweeps: --dims, else (0, 1) for 2-D, else the two with the largest KL."""
    d = ctx.model.latent_dim
    if ctx.dims is not None:
        return ctx.dims
    if d == 1:
        return (0,)
    if d == 2:
        return (0, 1)
    first, second = rank_dims(ctx.kl_per_dim)[:2]
    return (first, second)


def manifold_values(n: int, latent_range: float | None) -> torch.Tensor:
    """The n latent values along each manifold axis: Gaussian quantiles 5%..95%, or linear over [-R, R]."""
    return quantile_grid(n) if latent_range is None else linear_grid(n, latent_range)


def plot_manifold(ctx: PlotContext, path: Path) -> Path:
    """Images decoded on an n x n grid over two latent dims, the others at 0 (seeds 002, 003, 004).

    z[i] grows left to right and z[j] bottom to top, like the axes of the latent scatter.
    """
    _, h, w = ctx.image_shape
    n = 20 if max(h, w) <= 32 else max(6, 640 // max(h, w))
    values = manifold_values(n, ctx.latent_range)
    dims = manifold_dims(ctx)
    d = ctx.model.latent_dim
    where = (
        "at Gaussian quantiles 5%–95%"
        if ctx.latent_range is None
        else f"on a linear grid over [−{ctx.latent_range:g}, {ctx.latent_range:g}]"
    )
    ticks = [_number(v) for v in values.tolist()]
    if len(dims) == 1:
        z = torch.zeros(n, d)
        z[:, dims[0]] = values
        fig = image_figure(
            [Block(ctx.decode(z), n)],
            title=f"Latent manifold: z[{dims[0]}] {where}",
            col_labels=ticks,
            xlabel=f"z[{dims[0]}]",
        )
        return save_figure(fig, path)
    i, j = dims
    z = torch.zeros(n, n, d)
    z[:, :, i] = values[None, :]  # columns: z[i] ascending
    z[:, :, j] = values.flip(0)[:, None]  # rows: z[j] descending, so it grows upwards
    title = f"Latent manifold over z[{i}] × z[{j}] {where}"
    if d > 2:
        why = "chosen" if ctx.dims is not None else "largest KL"
        title += f"\n(dims {i} and {j}: {why}; the other {d - 2} dims at 0)"
    fig = image_figure(
        [Block(ctx.decode(z.reshape(n * n, d)), n, ticks[::-1])],
        title=title,
        col_labels=ticks,
        xlabel=f"z[{i}]",
        ylabel=f"z[{j}]",
    )
    return save_figure(fig, path)


def interpolation_pairs(ctx: PlotContext, count: int) -> list[tuple[int, int]]:
    """Random pairs of distinct test images, of different labels when the set has labels."""
    n = len(ctx.test)
    labels = ctx.test.labels
    order = torch.randperm(n, generator=ctx.generator("interpolation")).tolist()
    pairs, used = [], set()
    for a in order:
        if len(pairs) == count:
            break
        if a in used:
            continue
        b = next((b for b in order if b != a and b not in used and (labels is None or labels[b] != labels[a])), None)
        if b is not None:
            pairs.append((a, b))
            used |= {a, b}
    return pairs


def plot_interpolation(ctx: PlotContext, path: Path) -> Path:
    """Decoded paths between the μ of two test images: linear and spherical (slerp), originals at the ends."""
    pairs = interpolation_pairs(ctx, PAIRS)
    if not pairs:
        raise Skip("it needs at least two test images")
    mu = ctx.posterior.mu
    t = torch.linspace(0, 1, STEPS)
    blocks = []
    for k, (a, b) in enumerate(pairs):
        ends = ctx.floats(torch.tensor([a, b]))
        rows = []
        for path_fn in (lerp, slerp):
            decoded = ctx.decode(path_fn(mu[a], mu[b], t))
            rows.append(torch.cat([ends[:1], decoded, ends[1:]]))
        names = (ctx.class_name(a), ctx.class_name(b))
        what = f"{names[0]} → {names[1]}" if names[0] is not None else f"pair {k + 1}"
        blocks.append(Block(torch.cat(rows), STEPS + 2, [f"{what}: linear", f"{what}: slerp"]))
    cols = ["A"] + [_number(v, 2) for v in t.tolist()] + ["B"]
    fig = image_figure(
        blocks,
        title="Interpolation between test images in latent space (between their μ)",
        col_labels=cols,
        xlabel="A, B: the two test images; in between: decoded at weight t from A to B",
    )
    return save_figure(fig, path)


def plot_traversals(ctx: PlotContext, path: Path) -> Path:
    """Each latent dim (the most active ones first, up to 10) swept over [-3, 3], the others at the μ of
    the first test image drawn; after `vaelab evaluate --disentanglement`, each row names its dim's factor."""
    d = ctx.model.latent_dim
    kl = ctx.kl_per_dim
    dims = rank_dims(kl)[:TRAVERSAL_DIMS]
    base = ctx.posterior.mu[0]
    values = torch.linspace(-TRAVERSAL_LIMIT, TRAVERSAL_LIMIT, TRAVERSAL_STEPS)
    z = base.repeat(len(dims), TRAVERSAL_STEPS, 1)  # (dims, steps, D)
    for row, dim in enumerate(dims):
        z[row, :, dim] = values
    factors, when = ctx.dim_factors
    labels = traversal_labels(dims, kl.tolist(), factors, ctx.active_dims)
    which = (
        {1: "the one dim", 2: "both dims"}.get(d, f"all {d} dims")
        if len(dims) == d
        else f"the {len(dims)} dims (of {d}) with the largest KL"
    )
    xlabel = "value of the swept dim"
    if factors is not None:
        xlabel += (
            "\nafter ·: the factor the dim serves most by DCI (—: none; inactive: not an active unit, so unnamed)"
            "\n(MIG: f): the dim MIG finds most informative about f"
            f" (vaelab evaluate --disentanglement, saved {when.replace('T', ' ')})"
        )
    name = ctx.class_name(0)
    image = Block(torch.cat([ctx.floats(slice(0, 1)), ctx.decode(base[None])]), 2, ["test image, recon"])
    fig = image_figure(
        [image, Block(ctx.decode(z.reshape(-1, d)), TRAVERSAL_STEPS, labels)],
        title=f"Latent traversals: {which}, the others at the μ of a test image"
        + (f" (label {name})" if name is not None else ""),
        col_labels=[_number(v) for v in values.tolist()],
        xlabel=xlabel,
    )
    return save_figure(fig, path)


def plot_levels(ctx: PlotContext, path: Path) -> Path:
    """What each resolution of a hierarchy holds (VDVAE, Child 2021, fig. 4): 8 test images; under them, new
    images that keep their latent groups down to each resolution (posterior means) and draw the groups below
    from their priors (2 draws each, temperature 1); then the reconstructions (every group kept)."""
    shapes = ctx.model.group_shapes
    if len(shapes) == 1:
        raise Skip("the model has one latent group: the levels are a hierarchy's")
    keeps = ctx.model.levels[:-1] or range(1, len(shapes))  # each resolution's groups, or each group
    n = min(LEVEL_IMAGES, len(ctx.test))
    x = ctx.floats(slice(0, n))
    generator = ctx.generator("levels")
    rows, labels = [x], ["test image"]
    with torch.inference_mode():
        for keep in keeps:
            r = shapes[keep - 1][-1]
            for draw in range(1, LEVEL_DRAWS + 1):
                images = ctx.model.conditional_sample(x.to(ctx.model.device), keep, generator=generator)
                rows.append(images.float().cpu())
                labels.append(f"kept to {r}x{r} (groups 1-{keep}), draw {draw}")
    rows.append(ctx.reconstruct(x))
    labels.append(f"all {len(shapes)} groups kept: recon")
    fig = image_figure(
        [Block(torch.cat(rows), n, labels)],
        title=f"What each level of the hierarchy holds: {n} test images, their top groups kept",
        xlabel="kept: those groups at the image's posterior means; the groups below drawn from their priors",
    )
    return save_figure(fig, path)


def traversal_labels(
    dims: list[int], kl: list[float], factors: DimFactors | None, active: list[bool] | None = None
) -> list[str]:
    """One row label per swept dim: `z[3] (KL 2.41)`, and where a disentanglement evaluation of this model
    names the factors (`factors`, one per latent dim, see `PlotContext.dim_factors`) the factor the dim serves
    most by DCI: `z[3] (KL 2.41) · pos_x`, or `—` for none. MIG's best dim of a factor is a second opinion:
    shown only where it names another factor, `z[3] (KL 2.41) · pos_x (MIG: scale)`. A dim that `active`
    (`PlotContext.active_dims`) marks inactive carries next to nothing, and whatever DCI or MIG make of it is
    noise: `· — (inactive)`."""
    labels = []
    for dim in dims:
        label = f"z[{dim}] (KL {kl[dim]:.2f})"
        if factors is not None and active is not None and not active[dim]:
            label += " · — (inactive)"
        elif factors is not None:
            dci = factors.factor_of_dim[dim]
            others = [f for f in factors.mig_factors(dim) if f != dci]
            label += f" · {dci or '—'}" + (f" (MIG: {', '.join(others)})" if others else "")
        labels.append(label)
    return labels


def check_dims(dims: tuple[int, ...] | None, latent_dim: int) -> None:
    """--dims must name two different dims that the latent has."""
    if dims is None:
        return
    if len(dims) != 2 or dims[0] == dims[1]:
        raise VaelabError(f"--dims wants two different latent dims such as 0,1, got {','.join(map(str, dims))}")
    bad = [k for k in dims if not 0 <= k < latent_dim]
    if bad:
        raise VaelabError(f"--dims {bad[0]} is out of range: the latent has {latent_dim} dims (0..{latent_dim - 1})")


def _pad(images: torch.Tensor, ncol: int) -> torch.Tensor:
    """Fill a short last row with white images."""
    if len(images) == ncol:
        return images
    return torch.cat([images, images.new_ones(ncol - len(images), *images.shape[1:])])


def _number(value: float, digits: int = 1) -> str:
    """A short tick label: 0.6, -1.2, 0 (never -0.0 or 1.2e-07)."""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text

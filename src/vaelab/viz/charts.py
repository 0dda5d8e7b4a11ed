"""Charts with axes: loss curves, the latent scatter, the reconstruction-error histogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .context import PlotContext, Skip
from .figures import FONT, new_figure, save_figure
from .geometry import pca_2d

SCATTER_POINTS = 5000  # at most this many points in the latent scatter


def plot_loss(ctx: PlotContext, path: Path) -> Path:
    """Train and validation -ELBO per epoch in nats per image (seeds 002 and 004); the training loss too
    where it is not the -ELBO (beta != 1, ...)."""
    records = ctx.run.read_metrics()
    if not records:
        raise Skip("the run has no finished epoch in metrics.jsonl")
    epochs = [r["epoch"] for r in records]
    beta = ctx.config.objective.beta
    val_name = records[-1].get("val_split", "val")
    series = [("train −ELBO", [-r["train_elbo"] for r in records], "C0", "-"),
              (f"{val_name} −ELBO", [-r["val_elbo"] for r in records], "C1", "-")]
    losses = [r.get("train_loss") for r in records]
    if None not in losses and any(abs(loss + r["train_elbo"]) > 1e-6 * abs(loss) for loss, r in zip(losses, records)):
        what = f"recon + {beta:g}·KL" if beta != 1 else "the objective minimised"
        series.append((f"train loss ({what})", losses, "C0", ":"))

    fig = new_figure(7, 4.5)
    ax = fig.add_subplot()
    for label, values, colour, style in series:
        ax.plot(epochs, values, linestyle=style, color=colour, marker="o", markersize=4,
                label=f"{label} (last {values[-1]:.2f})")
    ax.set_title(f"{ctx.config.preset} on {ctx.config.data.name}: loss per epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if len(epochs) == 1:
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=FONT)
    return save_figure(fig, path)


def plot_latent(ctx: PlotContext, path: Path) -> Path:
    """The test images' posterior means, coloured by label (seed 004); PCA to 2-D for larger latents."""
    mu = ctx.posterior.mu
    n, d = mu.shape
    keep = torch.randperm(n, generator=ctx.generator("latent"))[:SCATTER_POINTS]  # random order: no class on top
    mu = mu[keep]
    if d == 1:
        xy = torch.stack([mu[:, 0], torch.rand(len(mu), generator=ctx.generator("jitter"))], 1)
        axes = ("z[0] (μ)", "random jitter (no meaning)")
        how = "1-D latent"
    elif d == 2 or ctx.dims is not None:
        i, j = ctx.dims or (0, 1)
        xy = mu[:, [i, j]]
        axes = (f"z[{i}] (μ)", f"z[{j}] (μ)")
        how = f"{d}-D latent" + (f", dims {i} and {j}" if d > 2 else "")
    else:
        xy, ratio = pca_2d(mu)
        axes = tuple(f"PC{k + 1} of μ ({100 * float(r):.1f}% var)" for k, r in enumerate(ratio))
        how = f"PCA of the {d}-D μ"

    fig = new_figure(7.5, 6)
    ax = fig.add_subplot()
    points = xy.numpy()
    labels = ctx.test.labels
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=3, c="0.45", alpha=0.6, linewidths=0, rasterized=True)
    else:
        _scatter_by_label(fig, ax, points, labels[keep].numpy(), ctx.test.class_names)
    ax.set_title(f"Test set in latent space: μ of {len(points)} images ({how})")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    if d > 1:
        ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    return save_figure(fig, path)


def _scatter_by_label(fig, ax, points: np.ndarray, labels: np.ndarray, class_names) -> None:
    import matplotlib
    from matplotlib.lines import Line2D

    classes = np.unique(labels)
    names = [class_names[c] if class_names is not None and c < len(class_names) else str(c) for c in classes]
    if len(classes) > 20:  # too many for a legend: a colour bar over the label values
        sc = ax.scatter(points[:, 0], points[:, 1], s=3, c=labels, cmap="viridis", alpha=0.7, linewidths=0,
                        rasterized=True)
        fig.colorbar(sc, ax=ax, label="label")
        return
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    colour_of = {c: cmap(k) for k, c in enumerate(classes)}
    ax.scatter(points[:, 0], points[:, 1], s=3, c=[colour_of[c] for c in labels], alpha=0.7, linewidths=0,
               rasterized=True)
    handles = [Line2D([], [], linestyle="", marker="o", markersize=6, color=colour_of[c], label=name)
               for c, name in zip(classes, names)]
    ax.legend(handles=handles, title="label", fontsize=FONT, loc="upper left", bbox_to_anchor=(1.01, 1),
              borderaxespad=0)


def plot_error_hist(ctx: PlotContext, path: Path) -> Path:
    """Histogram of each test image's reconstruction MSE through z = μ (seed 001), the mean marked."""
    errors = []
    n = len(ctx.test)
    for start in range(0, n, 500):
        x = ctx.floats(slice(start, start + 500))
        recon = ctx.decode(ctx.posterior.mu[start:start + 500])
        errors.append((x - recon).pow(2).flatten(1).mean(1))
    err = torch.cat(errors).double().numpy()
    mean, median = float(err.mean()), float(np.median(err))

    fig = new_figure(7, 4.5)
    ax = fig.add_subplot()
    ax.hist(err, bins=50, color="C0", alpha=0.85)
    ax.axvline(mean, color="C3", linestyle="--", linewidth=1.5, label=f"mean {mean:.4f}")
    ax.axvline(median, color="C2", linestyle=":", linewidth=1.5, label=f"median {median:.4f}")
    ax.set_title(f"Reconstruction error of {n} test images (z = μ)")
    ax.set_xlabel("mean squared error per pixel (pixel values in [0, 1])")
    ax.set_ylabel("number of images")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=FONT)
    return save_figure(fig, path)

"""Charts with axes: loss curves, the latent scatter, the reconstruction-error histogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..training.rundir import RunDir
from .context import PlotContext, Skip
from .figures import FONT, new_figure, save_figure
from .geometry import pca_2d

SCATTER_POINTS = 5000  # at most this many points in the latent scatter


def plot_loss(ctx: PlotContext, path: Path) -> Path:
    """Train and validation -ELBO in nats per image (seeds 002 and 004): per epoch, and per logged window of
    steps when the run has RUN/steps.jsonl; the training loss too where it is not the -ELBO (beta != 1, ...).
    The y range fits the bulk of the values, so one absurd epoch (keras-conv2's first) does not flatten the
    others: points off the scale are drawn at its edge as triangles, their values written beside them."""
    return save_figure(loss_figure(ctx), path)


def loss_figure(ctx: PlotContext):
    records = ctx.run.read_metrics()
    steps = read_steps(ctx.run)
    if not records and not steps:
        raise Skip("the run has no finished epoch in metrics.jsonl and no steps in steps.jsonl")
    by_step = bool(steps)  # x = training step (epoch means at the epoch's last step), else x = epoch
    x = [r["step"] if by_step else r["epoch"] for r in records]
    beta = ctx.config.objective.beta
    val_name = records[-1].get("val_split", "val") if records else "val"
    series = []  # (label, x, y, colour, line style, marker)
    if steps:
        window = _window(steps)
        series.append(
            (
                f"train −ELBO, mean of each {window} steps",
                [s["step"] for s in steps],
                [s["recon"] + s["kl"] for s in steps],
                "C0",
                "-",
                None,
            )
        )
    if records:
        train_line = "" if steps else "-"  # beside the steps' line, the epoch means are points
        series += [
            ("train −ELBO, epoch mean", x, [-r["train_elbo"] for r in records], "C0", train_line, "o"),
            (f"{val_name} −ELBO after the epoch", x, [-r["val_elbo"] for r in records], "C1", "-", "s"),
        ]
        losses = [r.get("train_loss") for r in records]
        if None not in losses and any(
            abs(loss + r["train_elbo"]) > 1e-6 * abs(loss) for loss, r in zip(losses, records)
        ):
            what = f"recon + {beta:g}·KL" if beta != 1 else "the objective minimised"
            series.append((f"train loss ({what}), epoch mean", x, losses, "C2", ":", "D"))

    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    limits = robust_range([v for _, _, ys, *_ in series for v in ys])
    off_scale = []  # (x, y, value, colour): points drawn at the edge
    for label, xs, ys, colour, style, marker in series:
        ys = np.asarray(ys, dtype=float)
        shown = ys if limits is None else np.clip(ys, *off_scale_edges(limits))
        last = f" (last {_short(ys[-1])})" if len(ys) else ""
        thin = marker is None
        ax.plot(
            xs,
            shown,
            linestyle=style or "none",
            color=colour,
            marker=marker,
            markersize=4.5,
            linewidth=1.0 if thin else 1.6,
            alpha=0.55 if thin else 1.0,
            label=label + last,
        )
        if limits is not None:
            for xv, yv, sv in zip(xs, ys, shown):
                if yv != sv and not np.isnan(yv):
                    off_scale.append((xv, sv, yv, colour))
    if limits is not None:
        ax.set_ylim(*limits)
        mark_off_scale(ax, off_scale, limits)
    title = f"{ctx.config.preset} on {ctx.config.data.name}: loss per {'step and per ' if by_step else ''}epoch"
    if off_scale:
        marks = " ".join(
            m
            for m, n in (
                ("▲", sum(p[1] >= off_scale_edges(limits)[1] for p in off_scale)),
                ("▼", sum(p[1] <= off_scale_edges(limits)[0] for p in off_scale)),
            )
            if n
        )
        title += (
            f"\ny range fitted to the bulk of the values; {len(off_scale)} "
            f"{'point' if len(off_scale) == 1 else 'points'} off the scale drawn at its edge ({marks})"
        )
    ax.set_title(title, fontsize=11)
    ax.set_ylabel("nats per image")
    if by_step:
        ax.set_xlabel("training step")
        _epoch_axis(ax, [r["step"] for r in records], [r["epoch"] for r in records])
    else:
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(x) == 1:
            ax.set_xlim(x[0] - 1, x[0] + 1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=FONT)
    return fig


OUTLIER_SPREADS = 10  # a value further than this many robust spreads from the median is off the scale


def robust_range(values) -> tuple[float, float] | None:
    """y limits that keep the bulk of `values` readable, or None when every value fits (matplotlib's own).

    The spread is the median absolute deviation (scaled to a standard deviation), and at least the median's
    own size, so a loss curve's ordinary early descent (543 down to 150) stays on the scale and only values
    far outside it (1.7e12 among values near 150, a diverging step, an infinity) are left off.
    """
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if len(finite) == 0:
        return None
    median = float(np.median(finite))
    spread = max(1.4826 * float(np.median(np.abs(finite - median))), abs(median), 1e-9)
    inside = finite[np.abs(finite - median) <= OUTLIER_SPREADS * spread]
    if len(inside) == len(finite) and not np.isinf(v).any():  # NaNs are not drawn: no reason for limits
        return None
    return padded(float(inside.min()), float(inside.max()))


def padded(low: float, high: float) -> tuple[float, float]:
    """y limits around [low, high] with a margin of 12% of the span (5% of the value, or 1, for a flat one)."""
    margin = 0.12 * (high - low) or 0.05 * abs(high) or 1.0
    return low - margin, high + margin


def off_scale_edges(limits: tuple[float, float]) -> tuple[float, float]:
    """Where off-scale points are drawn: just inside the limits."""
    low, high = limits
    inset = 0.035 * (high - low)
    return low + inset, high - inset


def mark_off_scale(ax, points: list, limits: tuple[float, float]) -> None:
    """Triangles at the edge for points off the scale (▲ above, ▼ below); beside each group of nearby ones,
    their true value (or range of values)."""
    high = off_scale_edges(limits)[1]
    left, right = ax.get_xlim()
    x_span = abs(right - left) or 1.0
    for above in (True, False):
        edge = sorted((p for p in points if (p[1] >= high) == above), key=lambda p: p[0])
        groups: list[list] = []
        for point in edge:
            if groups and point[0] - groups[-1][-1][0] <= 0.08 * x_span:
                groups[-1].append(point)
            else:
                groups.append([point])
        for group in groups:
            for xv, yv, _, colour in group:
                ax.plot(
                    [xv],
                    [yv],
                    linestyle="none",
                    marker="^" if above else "v",
                    markersize=9,
                    color=colour,
                    markeredgecolor="black",
                    markeredgewidth=0.8,
                    zorder=5,
                )
            values = sorted(value for _, _, value, _ in group)
            text = (
                _short(values[0])
                if len(values) == 1 or values[0] == values[-1]
                else f"{_short(values[0])} to {_short(values[-1])}"
            )
            ax.annotate(
                text,
                (group[-1][0], group[-1][1]),
                xytext=(8, -2 if above else 2),
                textcoords="offset points",
                fontsize=FONT,
                va="top" if above else "bottom",
                zorder=6,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
            )


def _short(value: float) -> str:
    """A loss value for a label: 152.31, or 1.7e+12 when large."""
    if not np.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) >= 1e5 else f"{value:.2f}"


def _window(steps: list[dict]) -> int:
    """The steps each logged line averages (the gap between lines)."""
    gaps = np.diff([s["step"] for s in steps])
    return int(np.median(gaps)) if len(gaps) else int(steps[0]["step"])


def _epoch_axis(ax, ends: list[int], epochs: list[int]) -> None:
    """Epoch numbers along the top, at each epoch's last step (at most about 12 labelled)."""
    if not ends:
        return
    every = -(-len(ends) // 12)
    top = ax.secondary_xaxis("top")
    top.set_xticks(ends[every - 1 :: every], [str(e) for e in epochs[every - 1 :: every]], fontsize=FONT)
    top.set_xlabel("end of epoch", fontsize=FONT)


def read_steps(run: RunDir) -> list[dict]:
    """The lines of RUN/steps.jsonl (`step`, `epoch`, `loss`, `recon`, `kl`, ...), in step order; [] when there
    are none (or this vaelab's RunDir cannot read them)."""
    reader = getattr(run, "read_steps", None)
    return list(reader()) if reader is not None else []


def marker_style(n: int) -> tuple[float, float]:
    """(size in points², alpha) of n scatter points: big and solid for a few, small and translucent for
    thousands, so 20 points are plain to see and 5,000 still show where they are dense."""
    size = float(np.clip(36.0 * np.sqrt(100.0 / max(n, 1)), 5.0, 40.0))  # 20 -> 40, 2,000 -> 8, 5,000 -> 5
    alpha = float(np.clip(1.25 - 0.15 * np.log10(max(n, 1)), 0.55, 0.95))  # 20 -> 0.95, 2,000 -> 0.75
    return size, alpha


def trained_classes(ctx: PlotContext) -> tuple[int, ...] | None:
    """The labels the run trained on (data.classes), or None when it trained on every class."""
    classes = ctx.config.data.classes
    return tuple(sorted(set(classes))) if classes is not None else None


def class_list(ctx: PlotContext, classes) -> str:
    """'0 (T-shirt), 3 (Dress)' or '0, 3' when the set has no class names."""
    names = ctx.test.class_names
    return ", ".join(f"{c} ({names[c]})" if names is not None and c < len(names) else str(c) for c in classes)


def plot_latent(ctx: PlotContext, path: Path) -> Path:
    """The test images' posterior means, coloured by label (seed 004); PCA to 2-D for larger latents. A run
    trained on some classes (--classes) shows those in colour and the others faded."""
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
    trained = trained_classes(ctx)
    size, alpha = marker_style(len(points))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=size, c="0.35", alpha=alpha, linewidths=0, rasterized=True)
    else:
        _scatter_by_label(fig, ax, points, labels[keep].numpy(), ctx.test.class_names, trained)
    top = ", the top group's" if len(ctx.model.group_shapes) > 1 else ""
    title = f"Test set in latent space: μ of {len(points)} images ({how}{top})"
    if trained is not None:
        title += f"\nthe run trained on class{'es' if len(trained) > 1 else ''} {class_list(ctx, trained)} only"
    ax.set_title(title)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    if d > 1:
        ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    return save_figure(fig, path)


def _scatter_by_label(
    fig, ax, points: np.ndarray, labels: np.ndarray, class_names, trained: tuple[int, ...] | None = None
) -> None:
    """Colour by label; with `trained` classes, those in colour on top and the other classes faded beneath."""
    import matplotlib
    from matplotlib.lines import Line2D

    size, alpha = marker_style(len(points))
    classes = np.unique(labels)
    names = [class_names[c] if class_names is not None and c < len(class_names) else str(c) for c in classes]
    if len(classes) > 20:  # too many for a legend: a colour bar over the label values
        sc = ax.scatter(
            points[:, 0], points[:, 1], s=size, c=labels, cmap="viridis", alpha=alpha, linewidths=0, rasterized=True
        )
        fig.colorbar(sc, ax=ax, label="label")
        return
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    colour_of = {c: cmap(k) for k, c in enumerate(classes)}
    is_trained = np.ones(len(labels), bool) if trained is None else np.isin(labels, trained)
    faded = ~is_trained
    if faded.any():  # the classes the run never saw: light grey-tinted, under the trained ones
        ax.scatter(
            points[faded, 0],
            points[faded, 1],
            s=size * 0.6,
            c=[colour_of[c] for c in labels[faded]],
            alpha=min(alpha, 0.25),
            linewidths=0,
            rasterized=True,
        )
    edge = {"edgecolors": "white", "linewidths": 0.6} if len(points) <= 200 else {"linewidths": 0}
    ax.scatter(
        points[is_trained, 0],
        points[is_trained, 1],
        s=size,
        c=[colour_of[c] for c in labels[is_trained]],
        alpha=alpha,
        rasterized=True,
        **edge,
    )
    handles = []
    for c, name in zip(classes, names):
        seen = trained is None or c in trained
        handles.append(
            Line2D(
                [],
                [],
                linestyle="",
                marker="o",
                markersize=7 if seen else 5,
                color=colour_of[c],
                alpha=1.0 if seen else 0.35,
                label=name if trained is None else f"{name} ({'trained' if seen else 'not trained'})",
            )
        )
    ax.legend(
        handles=handles, title="label", fontsize=FONT, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0
    )


def plot_error_hist(ctx: PlotContext, path: Path) -> Path:
    """Histogram of each test image's reconstruction MSE through z = μ (seed 001), the mean marked."""
    errors = []
    n = len(ctx.test)
    for start in range(0, n, 500):
        x = ctx.floats(slice(start, start + 500))
        recon = ctx.reconstruct(x)
        errors.append((x - recon).pow(2).flatten(1).mean(1))
    err = torch.cat(errors).double().numpy()
    mean, median = float(err.mean()), float(np.median(err))
    trained = trained_classes(ctx)
    labels = ctx.test.labels
    seen = None if trained is None or labels is None else np.isin(labels.numpy(), trained)

    fig = new_figure(7, 4.5)
    ax = fig.add_subplot()
    if seen is None or seen.all() or not seen.any():
        ax.hist(err, bins=50, color="C0", alpha=0.85)
        ax.axvline(mean, color="C3", linestyle="--", linewidth=1.5, label=f"mean {mean:.4f}")
        ax.axvline(median, color="C2", linestyle=":", linewidth=1.5, label=f"median {median:.4f}")
        title = f"Reconstruction error of {n} test images (z = μ)"
    else:  # a run trained on some classes: its classes against the others, which it never saw
        bins = np.histogram_bin_edges(err, bins=50)
        for group, colour, what in ((seen, "C0", "trained classes"), (~seen, "C1", "other classes")):
            part = err[group]
            ax.hist(part, bins=bins, color=colour, alpha=0.6, label=f"{what}: {len(part)} images")
            ax.axvline(
                float(part.mean()),
                color=colour,
                linestyle="--",
                linewidth=1.5,
                label=f"{what}: mean {float(part.mean()):.4f}",
            )
        title = (
            f"Reconstruction error of {n} test images (z = μ)\n"
            f"the run trained on class{'es' if len(trained) > 1 else ''} {class_list(ctx, trained)} only"
        )
    ax.set_title(title)
    ax.set_xlabel("mean squared error per pixel (pixel values in [0, 1])")
    ax.set_ylabel("number of images")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=FONT)
    return save_figure(fig, path)

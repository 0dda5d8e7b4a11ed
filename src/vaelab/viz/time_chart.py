"""The likelihood against wall-clock training time, drawn from RUN/metrics.jsonl alone (no images are loaded).

x: the training time at the end of each epoch, the sum of the records' `seconds` (each epoch's training steps;
validation is not counted), in minutes. y: the −ELBO on the validation split after each epoch (an upper bound
on the NLL) and, lighter, the training −ELBO (the epoch's mean), in bits/dim for an 8-bit likelihood on 8-bit
data and in nats per image otherwise. `time_figure` takes a list of runs, so several can share one axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..config import EIGHT_BIT_LIKELIHOODS, RunConfig
from ..evaluation.summary import nats_per_bit_dim
from .charts import mark_off_scale, off_scale_edges, padded, robust_range
from .context import PlotContext, Skip
from .figures import FONT, new_figure, save_figure

XLABEL = "training time (min, validation not counted)"


class Units(NamedTuple):
    """How a −ELBO in nats per image is shown: divided by `nats`, named `name`, to `decimals` places."""

    name: str  # "bits/dim" or "nats per image"
    nats: float  # nats per image in one unit: C·H·W·ln 2 for bits/dim, 1 for nats
    decimals: int


NATS = Units("nats per image", 1.0, 2)


def likelihood_units(config: RunConfig, image_shape: Sequence[int]) -> Units:
    """bits/dim for an 8-bit likelihood on 8-bit data (the unit of the papers on CIFAR-10 and the like), nats per
    image otherwise (binarised MNIST's papers report nats too)."""
    if config.model.likelihood in EIGHT_BIT_LIKELIHOODS and config.data.binarize == "none":
        return Units("bits/dim", nats_per_bit_dim(image_shape), 3)
    return NATS


class TimeSeries(NamedTuple):
    """One run's curves, one value per finished epoch."""

    minutes: np.ndarray  # (E,) training time at the end of each epoch
    val: np.ndarray  # (E,) −val_elbo in the units
    train: np.ndarray  # (E,) −train_elbo in the units
    val_split: str  # "val", or "test" for a run validated on its test set


def time_series(records: Sequence[dict[str, Any]], units: Units) -> TimeSeries:
    """The curves of a run's metrics records (in epoch order, as `RunDir.read_metrics` returns them)."""
    minutes = np.cumsum([float(r["seconds"]) for r in records]) / 60.0
    val = np.array([-float(r["val_elbo"]) for r in records]) / units.nats
    train = np.array([-float(r["train_elbo"]) for r in records]) / units.nats
    return TimeSeries(minutes, val, train, records[-1].get("val_split", "val") if records else "val")


def plot_time(ctx: PlotContext, path: Path) -> Path:
    """Validation −ELBO (and training −ELBO, lighter) against the training time summed over the epochs, in
    bits/dim for a likelihood that is a probability of the pixels, else nats per image; the last value marked."""
    records = ctx.run.read_metrics()
    if not records:
        raise Skip("the run has no finished epoch in metrics.jsonl")
    units = likelihood_units(ctx.config, ctx.image_shape)
    title = f"{ctx.config.preset} on {ctx.config.data.name}: −ELBO against training time"
    return save_figure(time_figure([(ctx.config.preset, records, units)], title=title), path)


def time_figure(runs: Sequence[tuple[str, Sequence[dict[str, Any]], Units]], *, title: str):
    """−ELBO against training time of each (label, metrics records, units) in `runs`, all in the same units;
    each run in its own colour, validation solid and training lighter, the last validation value written beside
    its point. Labels prefix the legend entries only when there are several runs. The y range fits the bulk of
    the values (`robust_range`): a point far off it is drawn at the edge as a triangle, its value beside it."""
    if not runs:
        raise ValueError("time_figure needs at least one run")
    units = runs[0][2]
    if any(u != units for _, _, u in runs):
        raise ValueError("cannot draw runs in different units on one axes: " + ", ".join(u.name for *_, u in runs))
    curves = []  # (label, series, colour)
    for k, (label, records, _) in enumerate(runs):
        if not records:
            raise ValueError(f"run {label!r} has no finished epoch")
        curves.append((label, time_series(records, units), f"C{k}"))

    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    limits = _zoomed_range(curves) or robust_range([v for _, s, _ in curves for v in (*s.val, *s.train)])
    off_scale = []  # (x, y drawn, value, colour)
    longest = max(float(s.minutes[-1]) for _, s, _ in curves)
    for label, s, colour in curves:
        prefix = f"{label}: " if len(curves) > 1 else ""
        marker = "o" if len(s.minutes) <= 50 else None
        for ys, what, style in (
            (s.train, "train −ELBO, epoch mean", dict(linestyle="--", linewidth=1.1, alpha=0.45, markersize=2.5)),
            (s.val, f"{s.val_split} −ELBO after the epoch", dict(linestyle="-", linewidth=1.8, markersize=3.5)),
        ):
            shown = ys if limits is None else np.clip(ys, *off_scale_edges(limits))
            ax.plot(s.minutes, shown, color=colour, marker=marker, label=prefix + what, **style)
            if limits is not None:
                off_scale += [(x, d, v, colour) for x, d, v in zip(s.minutes, shown, ys) if d != v and not np.isnan(v)]
        last = float(s.val[-1])
        if np.isnan(last):
            continue
        value = f"{last:.{units.decimals}f}" if np.isfinite(last) else str(last)
        at = last if limits is None else float(np.clip(last, *off_scale_edges(limits)))
        ax.scatter([float(s.minutes[-1])], [at], s=28, color=colour, zorder=4)  # the value written beside it
        left = float(s.minutes[-1]) < 0.3 * longest  # near the left edge the text goes to the right of the point
        ax.annotate(
            f"{value} {units.name} at {duration(float(s.minutes[-1]))}",
            (float(s.minutes[-1]), at),
            xytext=(6, 8) if left else (-6, 8),
            textcoords="offset points",
            ha="left" if left else "right",
            fontsize=FONT,
            color=colour,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )
    ax.set_xlim(left=0)
    if limits is not None:
        ax.set_ylim(*limits)
        mark_off_scale(ax, off_scale, limits)
        if off_scale:
            title += f"\n{len(off_scale)} {'point' if len(off_scale) == 1 else 'points'} off the scale, at its edge"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(XLABEL)
    ax.set_ylabel(f"−ELBO ({units.name}), ≥ NLL")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=FONT)
    return fig


ZOOM_AFTER = 0.1  # the y range shows each run's curves from this fraction of its own training time on


def _zoomed_range(curves) -> tuple[float, float] | None:
    """y limits that fit every run's values after the first tenth of its own training time, so that the slow
    gains of a long run stay visible beside a short one; the first epochs' high values are drawn at the top
    edge. None when no run has 5 epochs, or the values are not all finite."""
    if max(len(s.minutes) for _, s, _ in curves) < 5:
        return None
    later = np.array(
        [v for _, s, _ in curves for ys in (s.val, s.train) for v in ys[s.minutes >= ZOOM_AFTER * float(s.minutes[-1])]]
    )
    if not len(later) or not np.isfinite(later).all():
        return None
    return padded(float(later.min()), float(later.max()))


def duration(minutes: float) -> str:
    """'40 s', '2.5 min', '80 min', '3.2 h'."""
    if minutes < 1:
        return f"{60 * minutes:.0f} s"
    if minutes < 10:
        return f"{minutes:.1f} min"
    return f"{minutes:.0f} min" if minutes < 100 else f"{minutes / 60:.1f} h"

"""`plot_run`: every picture of a trained run, written into RUN/plots/.

from vaelab.viz import plot_run
for path in plot_run("runs/demo", only=["loss", "manifold"]):
    print(path)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from .. import checks
from ..errors import VaelabError
from ..registry import Registry
from ..training.rundir import RunDir
from ..training.trainer import load_model
from .charts import plot_error_hist, plot_latent, plot_loss
from .context import PlotContext, Skip
from .decoded import (
    check_dims,
    plot_interpolation,
    plot_levels,
    plot_manifold,
    plot_reconstructions,
    plot_samples,
    plot_traversals,
)
from .progress import plot_progress
from .time_chart import plot_time

DEFAULT_LIMIT = 2000  # test images: the data pictures take a few seconds on a CPU


class Picture(NamedTuple):
    filename: str
    draw: Callable[[PlotContext, Path], Path]


PICTURES: Registry[Picture] = Registry("plot")
for _name, _picture in [
    ("loss", Picture("loss.png", plot_loss)),
    ("time", Picture("time.png", plot_time)),
    ("reconstructions", Picture("reconstructions.png", plot_reconstructions)),
    ("samples", Picture("samples.png", plot_samples)),
    ("progress", Picture("progress.gif", plot_progress)),
    ("latent", Picture("latent.png", plot_latent)),
    ("manifold", Picture("manifold.png", plot_manifold)),
    ("error_hist", Picture("error_hist.png", plot_error_hist)),
    ("interpolation", Picture("interpolation.png", plot_interpolation)),
    ("traversals", Picture("traversals.png", plot_traversals)),
    ("levels", Picture("levels.png", plot_levels)),
]:
    PICTURES.register(_name, _picture)


def plot_run(
    run: str | Path,
    *,
    only: Iterable[str] | str | None = None,
    limit: int = DEFAULT_LIMIT,
    seed: int = 0,
    latent_range: float | None = None,
    dims: tuple[int, int] | str | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    weights: str = "ema",
) -> list[Path]:
    """Draw the pictures of a run (all, or those named in `only`) into RUN/plots/ (or `out`).

    only: names from `PICTURES` (loss, time, reconstructions, samples, progress, latent, manifold,
        error_hist, interpolation, traversals, levels), as a list or a comma-separated string.
    limit: how many test images (a random subset, fixed by the seed) the data pictures use.
    seed: fixes every random draw; each picture has its own stream.
    latent_range: draw the manifold on a linear grid over [-R, R] instead of Gaussian quantiles.
    dims: the two latent dims of the manifold (and of the scatter, instead of PCA), e.g. (0, 3) or "0,3".
    weights: "ema" (the moving average where the run kept one) or "raw" (see `vaelab.load`).
    Returns the files written. A picture the run cannot have (no metrics, no
    per-epoch samples) is skipped with one line to `log`. Bad input raises VaelabError.
    """
    names = parse_only(only)
    dims = parse_dims(dims) if isinstance(dims, str) else (tuple(dims) if dims is not None else None)
    checks.whole("--limit", limit, low=1)
    checks.seed("--seed", seed)
    if latent_range is not None:
        checks.latent_range("--range", latent_range)
    model = load_model(run, device=device, weights=weights)
    check_dims(dims, model.latent_dim)
    run_dir = RunDir(Path(run) if Path(run).is_dir() else Path(run).parent)
    ctx = PlotContext(
        run=run_dir,
        model=model,
        out=Path(out) if out is not None else run_dir.path / "plots",
        limit=limit,
        seed=seed,
        data_dir=data_dir,
        dims=dims,
        latent_range=latent_range,
        log=log,
    )
    written: list[Path] = []
    made_out = not ctx.out.exists()
    try:
        for name in names:
            picture = PICTURES[name]
            try:
                written.append(picture.draw(ctx, ctx.out / picture.filename))
            except Skip as reason:
                log(f"skipped {picture.filename}: {reason}")
    finally:  # a failure before the first picture leaves no empty folder that looks like a finished plot
        if made_out and not written:
            with contextlib.suppress(OSError):
                ctx.out.rmdir()
    return written


def parse_only(only: Iterable[str] | str | None) -> list[str]:
    """Picture names in drawing order; `None` means all. Unknown names are an error."""
    if only is None:
        return PICTURES.names()
    items = only.split(",") if isinstance(only, str) else list(only)
    wanted = {Path(item.strip()).stem.replace("-", "_") for item in items if item.strip()}
    if not wanted:
        raise VaelabError("--only names no plot (known: " + ", ".join(PICTURES.names()) + ")")
    for name in sorted(wanted):
        PICTURES[name]  # raises "unknown plot 'x' (known: ...)"
    return [name for name in PICTURES.names() if name in wanted]


def parse_dims(text: str) -> tuple[int, int]:
    """'i,j' -> (i, j)."""
    parts = text.split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise VaelabError(f"--dims wants two latent dims such as 0,1, got {text!r}") from None
    if len(dims) != 2:
        raise VaelabError(f"--dims wants two latent dims such as 0,1, got {text!r}")
    return dims  # type: ignore[return-value]

"""Pictures of what a model learned: image grids, and `plot_run` for every picture of a run."""

from .grid import save_grid, tile

__all__ = ["plot_run", "save_grid", "tile"]


def __getattr__(name: str):
    # Imported on first use: plots needs the training package, whose loop imports viz.grid.
    if name == "plot_run":
        from .plots import plot_run

        return plot_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

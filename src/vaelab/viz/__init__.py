"""Pictures of what a model learned."""

from .grid import save_grid, tile

__all__ = ["save_grid", "tile"]

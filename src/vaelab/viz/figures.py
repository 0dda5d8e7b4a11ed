"""Matplotlib figures, drawn off-screen, and the labelled image grids most pictures are made of.

matplotlib is imported inside the functions (`import vaelab` stays light) and
only through `matplotlib.figure.Figure`, which renders with Agg without
touching pyplot's global backend or state.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..files import write_bytes
from .grid import tile

DPI = 100
FONT = 9  # points, tick labels and legends
TARGET_CELL = 56  # images are upscaled (nearest neighbour) to at least this many pixels a side


def new_figure(width: float, height: float):
    """A figure of width x height inches, not attached to any GUI backend."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI)


def save_figure(fig, path: Path) -> Path:
    """Render `fig` to PNG at `path` atomically (temp file + rename)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15, facecolor="white")
    return write_bytes(path, buffer.getvalue())


def upscale_factor(size: int, target: int = TARGET_CELL) -> int:
    """Whole-number zoom that makes an image side of `size` pixels at least `target` pixels (1 for large images)."""
    return max(1, -(-target // size))


@dataclass(frozen=True)
class Block:
    """Rows of images tiled together: `images` (rows * ncol, C, H, W) in [0, 1], one label per row; a block of
    one row may caption each image (a short text under it, up to two lines)."""

    images: torch.Tensor
    ncol: int
    row_labels: Sequence[str] = ()
    captions: Sequence[str] = ()

    def __post_init__(self):
        if self.captions and len(self.images) > self.ncol:
            raise ValueError("only a block of one row can caption its images")


CAPTION_LINE = 12  # pixels per line of an image caption (FONT - 1 points at DPI)


def image_figure(
    blocks: Sequence[Block],
    *,
    title: str,
    col_labels: Sequence[str] = (),
    xlabel: str | None = None,
    ylabel: str | None = None,
    scale: int | None = None,
):
    """A figure showing image blocks stacked top to bottom (a white gap between blocks), upscaled by a whole
    factor (nearest neighbour: small images stay readable and sharp) and tiled with 1-pixel grey borders.

    Row labels go on the left at each row's centre, `col_labels` under the columns of the last block.
    Grey data is drawn grey, RGB data in colour.
    """
    h, w = blocks[0].images.shape[-2:]  # every block holds images of this size
    scale = scale or upscale_factor(max(h, w))
    h, w = h * scale, w * scale
    border = 1  # one pixel whatever the zoom: the images are upscaled before tiling
    gap = max(8, h // 3)
    parts, row_centres, labels, captions = [], [], [], []  # parts: canvases, and ints for white strips
    top = 0
    for k, block in enumerate(blocks):
        if k:  # a white gap between blocks; the captions' strip above serves as (part of) it
            strip = parts.pop() if isinstance(parts[-1], int) else 0
            parts.append(max(gap, strip))
            top += parts[-1] - strip
        images = block.images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)  # crisp zoom
        canvas = _rgb(tile(images, ncol=block.ncol, border=border))
        parts.append(canvas)
        for r, label in enumerate(block.row_labels):
            row_centres.append(top + border + r * (h + border) + h / 2)
            labels.append(label)
        top += canvas.shape[0]
        if block.captions:
            lines = max(text.count("\n") + 1 for text in block.captions)
            for c, text in enumerate(block.captions):
                captions.append((border + c * (w + border) + w / 2, top + 1, text))
            parts.append(4 + CAPTION_LINE * lines)
            top += parts[-1]
    width = max(p.shape[1] for p in parts if not isinstance(p, int))
    canvas = np.concatenate(
        [np.full((p, width, 3), 255, np.uint8) if isinstance(p, int) else _pad_width(p, width) for p in parts]
    )

    height_in, width_in = canvas.shape[0] / DPI, canvas.shape[1] / DPI
    fig = new_figure(width_in, height_in)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_title(title, fontsize=11, pad=8)
    ax.set_yticks(row_centres, labels, fontsize=FONT)
    ncol = blocks[-1].ncol  # column labels belong to the last (bottom) block
    if col_labels:
        ax.set_xticks([border + c * (w + border) + w / 2 for c in range(ncol)], list(col_labels), fontsize=FONT - 1)
    else:
        ax.set_xticks([])
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=FONT + 1)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=FONT + 1)
    for x, y, text in captions:
        ax.text(x, y, text, ha="center", va="top", fontsize=FONT - 1, linespacing=1.0)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return fig


def _rgb(canvas: np.ndarray) -> np.ndarray:
    return np.repeat(canvas[..., None], 3, axis=2) if canvas.ndim == 2 else canvas


def _pad_width(canvas: np.ndarray, width: int) -> np.ndarray:
    if canvas.shape[1] == width:
        return canvas
    pad = np.full((canvas.shape[0], width - canvas.shape[1], 3), 255, np.uint8)
    return np.concatenate([canvas, pad], axis=1)

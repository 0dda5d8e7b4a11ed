"""The per-epoch fixed-noise sample grids of a run as one animated GIF (seed 003), each frame captioned."""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..files import write_bytes
from .context import PlotContext, Skip

FRAME_MS, LAST_FRAME_MS = 400, 2000
CAPTION = 18  # pixels of caption strip above each frame
MIN_WIDTH = 200  # smaller grids are upscaled (nearest neighbour)


def epoch_grids(run_path: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of RUN/samples/epoch_NNNN.png, in epoch order (0: before training)."""
    found = []
    for path in (run_path / "samples").glob("epoch_*.png"):
        m = re.fullmatch(r"epoch_(\d+)\.png", path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def plot_progress(ctx: PlotContext, path: Path) -> Path:
    """One frame per saved epoch grid, the last held longer; written atomically."""
    grids = epoch_grids(ctx.run.path)
    if not grids:
        raise Skip("the run saved no per-epoch sample grids (RUN/samples/epoch_*.png)")
    last = grids[-1][0]
    frames = [_captioned(p, f"epoch {e}" + (" (untrained)" if e == 0 else f" of {last}")) for e, p in grids]
    durations = [FRAME_MS] * (len(frames) - 1) + [LAST_FRAME_MS]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return write_bytes(path, buffer.getvalue())


def _captioned(grid: Path, text: str) -> Image.Image:
    with Image.open(grid) as image:
        image = image.convert("RGB" if image.mode in ("RGB", "RGBA", "P") else "L")
    if image.width < MIN_WIDTH:
        k = -(-MIN_WIDTH // image.width)
        image = image.resize((image.width * k, image.height * k), Image.NEAREST)
    white = 255 if image.mode == "L" else (255, 255, 255)
    black = 0 if image.mode == "L" else (0, 0, 0)
    frame = Image.new(image.mode, (image.width, image.height + CAPTION), white)
    frame.paste(image, (0, CAPTION))
    ImageDraw.Draw(frame).text((4, 3), text, fill=black, font=ImageFont.load_default())
    return frame

"""`vaelab sample` and `vaelab reconstruct`: pictures from a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..api import expost_images, load
from ..files import display_name, is_stream
from ..models.expost import fit_expost
from ..training.data import load_split
from ..viz.decoded import prior_samples
from ..viz.figures import Block, image_figure, save_figure
from ..viz.grid import save_grid
from .args import add_data_dir, add_expost, add_weights, positive_int, seed, temperature


def add_parsers(sub) -> None:
    p = sub.add_parser("sample", help="draw new images from a trained run as a tiled grid")
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("-n", type=positive_int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--temperature",
        type=temperature,
        default=1.0,
        help="scale of the prior noise (default 1); a hierarchy takes one per group, top first: "
        "1,0.8,0.6 (the last repeats for the groups below)",
    )
    p.add_argument("-o", "--output", default="samples.png", metavar="FILE.png", help="- writes the PNG to stdout")
    p.add_argument("--device", default="cpu")
    add_expost(p)
    add_data_dir(p)
    add_weights(p)
    p.set_defaults(func=sample)

    p = sub.add_parser("reconstruct", help="test images over their reconstructions, in labelled rows")
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("-n", type=positive_int, default=16, help="number of test images (default 16)")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--seed", type=seed, default=0, help="picks the images (a seeded random subset)")
    p.add_argument(
        "-o", "--output", default="reconstructions.png", metavar="FILE.png", help="- writes the PNG to stdout"
    )
    p.add_argument("--device", default="cpu")
    add_data_dir(p)
    add_weights(p)
    p.set_defaults(func=reconstruct)


def sample(args: argparse.Namespace) -> int:
    model = load(args.run, device=args.device, weights=args.weights)
    expost = None
    if args.expost_levels is not None:
        images = expost_images(model.config, args.data_dir, args.expost_n, args.seed)  # as evaluate --seed fits
        expost = fit_expost(model, images, args.expost_levels)
    images = prior_samples(model, args.n, seed=args.seed, temperature=args.temperature, expost=expost)
    _written(save_grid(images, args.output, scale=_scale(images)))
    return 0


def reconstruct(args: argparse.Namespace) -> int:
    model = load(args.run, device=args.device, weights=args.weights)
    images = load_split(model.config.data, args.split, args.data_dir).images
    # A random subset: some test sets (CIFAR-10's local copy) are sorted by class.
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))[: args.n]
    x = images[pick]
    originals = x.float().div(255.0)
    recons = model.reconstruct(x).float().cpu()
    ncol = min(len(x), 8)
    blocks = [
        Block(
            torch.cat([_pad_row(t[start : start + ncol], ncol) for t in (originals, recons)]),
            ncol,
            ["original", "reconstruction"],
        )
        for start in range(0, len(x), ncol)
    ]  # each group of `ncol`: originals over their reconstructions
    title = f"{len(x)} {args.split} images (seed {args.seed}) and their reconstructions (z = μ)"
    _written(save_figure(image_figure(blocks, title=title), args.output))
    return 0


def _written(path: Path) -> None:
    """Print the file written, unless the PNG itself went to stdout (`-o -`, `/dev/stdout`, a pipe)."""
    if not is_stream(path):
        print(display_name(str(path)))


def _pad_row(row: torch.Tensor, ncol: int) -> torch.Tensor:
    """Fill a short last row with white images."""
    if len(row) == ncol:
        return row
    return torch.cat([row, row.new_ones(ncol - len(row), *row.shape[1:])])


def _scale(images: torch.Tensor) -> int:
    return 2 if images.shape[-1] <= 32 else 1

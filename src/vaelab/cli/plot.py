"""`vaelab plot RUN`: every picture of a trained run into RUN/plots/."""

from __future__ import annotations

import argparse
import sys

from ..files import display_name
from ..viz.plots import DEFAULT_LIMIT, PICTURES, plot_run  # matplotlib itself loads only when drawing
from .args import add_data_dir, add_weights, latent_range, positive_int, seed


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="draw loss curves, reconstructions, samples, latent maps ... into RUN/plots/",
        description="Draw the pictures of a trained run into RUN/plots/ and print the files written.",
    )
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("--only", metavar="NAME[,NAME]", help=f"draw only these ({', '.join(PICTURES.names())})")
    p.add_argument(
        "-n",
        "--limit",
        type=positive_int,
        default=DEFAULT_LIMIT,
        help=f"test images used (a random N, fixed by --seed; default {DEFAULT_LIMIT})",
    )
    p.add_argument("--seed", type=seed, default=0, help="seed of every random draw (default 0)")
    p.add_argument(
        "--range",
        type=latent_range,
        metavar="R",
        dest="latent_range",
        help="manifold on a linear grid over [-R, R] (default: Gaussian quantiles 5%%..95%%)",
    )
    p.add_argument(
        "--dims",
        metavar="I,J",
        help="the two latent dims of the manifold and scatter (default: 0,1, or the two with the "
        "largest KL for larger latents, and PCA for the scatter)",
    )
    p.add_argument("-o", "--out", metavar="DIR", help="write here instead of RUN/plots/")
    p.add_argument("--device", default="cpu")
    add_data_dir(p)
    add_weights(p)
    p.set_defaults(func=plot)


def plot(args: argparse.Namespace) -> int:
    paths = plot_run(
        args.run,
        only=args.only,
        limit=args.limit,
        seed=args.seed,
        latent_range=args.latent_range,
        dims=args.dims,
        device=args.device,
        data_dir=args.data_dir,
        out=args.out,
        log=lambda line: print(f"vaelab: {line}", file=sys.stderr),
        weights=args.weights,
    )  # stdout: only the files written
    for path in paths:
        print(display_name(str(path)))
    return 0

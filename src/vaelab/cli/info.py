"""`vaelab presets` and `vaelab datasets`: what is available."""

from __future__ import annotations

import argparse

from ..data import dataset_status
from ..data.catalog import fetch, image_shape
from ..models import build_model, count_parameters
from ..presets import PRESETS
from .args import add_data_dir


def add_parsers(sub) -> None:
    p = sub.add_parser("presets", help="list the presets: parameters, epochs, batch size, seed, description")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each preset's notes")
    p.set_defaults(func=presets)
    p = sub.add_parser("datasets", help="list the datasets and whether they are present; --download fetches them")
    p.add_argument(
        "--download",
        nargs="+",
        metavar="NAME",
        help="download these datasets into the data folder now (e.g. mnist cifar10), for use offline",
    )
    add_data_dir(p)
    p.set_defaults(func=datasets)


def presets(args: argparse.Namespace) -> int:
    for name in PRESETS.names():
        preset = PRESETS[name]
        cfg = preset.config
        shape = image_shape(cfg.data.name, cfg.data.image_size, cfg.data.grayscale)
        params = count_parameters(build_model(cfg.model, cfg.objective, shape))
        schedule = f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}"
        source = f"seed {preset.seed}" if preset.seed else "vaelab's own"
        print(f"{name:<12} {params:>10,} params  {schedule:<22} {source:<37} {preset.description}")
        if args.verbose:
            print(f"{'':<12} {preset.notes}")
    return 0


def datasets(args: argparse.Namespace) -> int:
    for name in args.download or ():
        folder = fetch(name, args.data_dir)
        print(
            f"{name}: nothing to download (drawn in code, or your own folder)"
            if folder is None
            else f"{name}: ready in {folder}"
        )
    for row in dataset_status(args.data_dir):
        if row.path is None:  # generated in code, or the user's own folder
            state, where = "-", "no files to fetch"
        else:
            state, where = ("present" if row.present else "missing"), str(row.path)
        sizes = f"{row.num_train}/{row.num_test}" if row.num_train else "-"
        shape = "x".join(map(str, row.image_shape))
        print(f"{row.name:<14} {state:<8} {shape:<8} {sizes:<12} {row.description}  [{where}]")
    return 0

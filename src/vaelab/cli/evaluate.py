"""`vaelab evaluate`: the ELBO and its parts on a split, as text or one JSON object."""

from __future__ import annotations

import argparse
import json

from ..api import evaluate
from .args import add_data_dir, non_negative_int, positive_int


def add_parsers(sub) -> None:
    p = sub.add_parser("evaluate", help="test ELBO, recon and KL of a trained run")
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--limit", type=positive_int, help="evaluate on the first N images of the split")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the latent draws (default 0)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = evaluate(args.run, split=args.split, limit=args.limit, seed=args.seed, batch_size=args.batch_size,
                      data_dir=args.data_dir, device=args.device)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['split']} ({result['n']} images): ELBO {result['elbo']:.2f} nats  "
              f"(recon {result['recon']:.2f}, KL {result['kl']:.2f})")
    return 0

"""`vaelab report`: one self-contained HTML page of a run (pictures and evaluation made when missing)."""

from __future__ import annotations

import argparse
import sys

from ..api import report
from .args import add_data_dir, add_weights


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write RUN/report.html: config, metrics, evaluation and every picture",
        description="Write RUN/report.html. Pictures (vaelab plot) and RUN/eval.json (vaelab "
        "evaluate) are made first when the run does not have them yet.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--refresh", action="store_true", help="redraw the pictures and re-evaluate even if present")
    p.add_argument("--no-eval", action="store_true", help="do not evaluate; use RUN/eval.json only if present")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines on standard error")
    add_data_dir(p)
    add_weights(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = report(
        args.run,
        refresh=args.refresh,
        evaluate_missing=not args.no_eval,
        device=args.device,
        data_dir=args.data_dir,
        log=lambda line: print(f"vaelab: {line}", file=sys.stderr),
        progress=not args.no_progress,
        weights=args.weights,
    )
    print(path)
    return 0

"""`vaelab anomaly`: an anomaly score per image (-ELBO or -IWAE bound, nats), a CSV, and the AUROC."""

from __future__ import annotations

import argparse
import sys

import torch

from ..api import anomaly_scores
from ..errors import VaelabError
from ..files import display_name, is_stream
from .args import add_data_dir, add_weights, positive_int, seed
from .train import class_list


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "anomaly",
        help="score images by how badly a run explains them (higher = more anomalous)",
        description="Score each image by -ELBO or -IWAE bound (nats) under a trained run; with "
        "--normal-classes, report the AUROC of finding the other classes.",
    )
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", metavar="DIR", help="score every image file under DIR (resized to the run's shape)")
    src.add_argument("--dataset", metavar="NAME", help="score a dataset split (mnist, fashion-mnist, ...)")
    p.add_argument("--split", choices=["train", "test"], default="test", help="split of --dataset (default test)")
    p.add_argument(
        "--score",
        choices=["elbo", "iwae"],
        default="elbo",
        help="-ELBO (one z, fast) or -IWAE bound with --k samples (tighter, k times the cost)",
    )
    p.add_argument("--k", type=positive_int, default=100, help="samples of the IWAE bound (default 100)")
    p.add_argument("--limit", type=positive_int, help="score the first N images only")
    p.add_argument(
        "--normal-classes",
        type=class_list,
        metavar="0,1,...",
        help="labels of the normal images: report the AUROC of separating the others from them",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE.csv",
        help="write index[,file][,label],score per image (-: to stdout, the summary to stderr)",
    )
    p.add_argument(
        "--grid",
        metavar="FILE.png",
        help="also draw the 8 most and the 8 least anomalous images, each with its score, into FILE.png",
    )
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument(
        "--chunk",
        type=positive_int,
        metavar="N",
        help="at most N (image, sample) pairs decoded at once (default 256 on CPU, 4096 on CUDA)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines on standard error")
    add_data_dir(p)
    add_weights(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    streams = [path for path in (args.output, args.grid) if path is not None and is_stream(path)]
    if len(streams) == 2:
        raise VaelabError("-o and --grid cannot both write to standard output")
    r = anomaly_scores(
        args.run,
        input_dir=args.input,
        dataset=args.dataset,
        split=args.split,
        score=args.score,
        k=args.k,
        limit=args.limit,
        normal_classes=args.normal_classes,
        output=args.output,
        seed=args.seed,
        batch_size=args.batch_size,
        chunk=args.chunk,
        data_dir=args.data_dir,
        weights=args.weights,
        device=args.device,
        progress=not args.no_progress,
        grid=args.grid,
    )
    out = sys.stderr if streams else sys.stdout  # a CSV or PNG on stdout: only that
    what = "-ELBO" if r.score == "elbo" else f"-IWAE bound (k={r.k})"
    s = r.scores
    print(
        f"{len(s)} images scored by {what} in nats: mean {s.mean():.2f}, median {s.median():.2f}, "
        f"min {s.min():.2f}, max {s.max():.2f}",
        file=out,
    )
    if r.auroc is not None:
        normal = ",".join(map(str, r.normal_classes))
        anomalous = int((~torch.isin(r.labels, torch.tensor(r.normal_classes))).sum())
        print(
            f"AUROC {r.auroc:.4f}  ({anomalous} anomalous vs {len(s) - anomalous} normal images; "
            f"normal classes {normal})",
            file=out,
        )
    if r.output is None:
        top = s.argsort(descending=True)[:5].tolist()
        names = [display_name(r.files[i]) if r.files else f"#{i}" for i in top]
        print(
            "most anomalous: "
            + ", ".join(f"{n} ({s[i]:.1f})" for n, i in zip(names, top))
            + "  (-o FILE.csv writes every score)",
            file=out,
        )
    elif out is sys.stdout:
        print(f"scores: {display_name(str(r.output))}", file=out)
    if r.grid is not None and not is_stream(r.grid):
        print(f"grid: {display_name(str(r.grid))}", file=out)
    return 0

"""Wall time until cvae2 (the seed 003 architecture) reaches a test ELBO, with vaelab's own recipe.

    python -m benchmarks.time_to_quality [--target -158] [--batch-size 128] [--lr 3e-3] [--precision bf16]
                                         [--kl analytic] [--max-epochs 6] [--reference PYTHON_WITH_TF]

Trains `vaelab train --preset cvae2` with the given batch size, learning
rate, precision and KL estimator (the network is unchanged), validating on
the MNIST test set after every epoch as the preset does, and stops at the
first epoch whose test ELBO reaches --target. Prints every epoch's test
ELBO with the wall time since the call began (data loading, model building,
the optimiser steps and each epoch's test evaluation, all included).
--reference runs the seed's own TensorFlow recipe (batch 32, Adam 1e-4, 10
epochs; benchmarks/tf_reference.py --recipe) with that interpreter on the
same files afterwards, and prints the ratio of the two wall times. Needs the
real MNIST under VAELAB_DATA_DIR (or --data-dir).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import ROOT


class Reached(Exception):
    """Raised from the epoch callback to end training at the target."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", type=float, default=-158.0, help="test ELBO to reach (nats)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--kl", default="analytic", choices=["analytic", "mc"])
    p.add_argument("--max-epochs", type=int, default=6)
    p.add_argument("--limit", type=int, help="train on the first N images only (a quick check, not the benchmark)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA_DIR"))
    p.add_argument("--reference", metavar="PYTHON", help="a Python with TensorFlow: time the seed's recipe too")
    args = p.parse_args(argv)
    if not args.data_dir:
        raise SystemExit("needs the real MNIST: set VAELAB_DATA_DIR or pass --data-dir")

    import vaelab

    recipe = dict(
        batch_size=args.batch_size,
        lr=args.lr,
        precision=args.precision,
        kl=args.kl,
        epochs=args.max_epochs,
        device=args.device,
        sample_grid=0,
        limit=args.limit,
    )
    print(
        "vaelab cvae2 with " + ", ".join(f"{k}={v}" for k, v in recipe.items() if k != "sample_grid" and v is not None)
    )
    start = time.perf_counter()
    reached = None

    def on_epoch(epoch: int, record: dict, model) -> None:
        nonlocal reached
        wall = time.perf_counter() - start
        print(
            f"  epoch {epoch}: test ELBO {record['val_elbo']:.2f} at {wall:.1f} s "
            f"({record['images_per_s']:.0f} img/s in training)",
            flush=True,
        )
        if record["val_elbo"] >= args.target:
            reached = (epoch, wall, record["val_elbo"])
            raise Reached

    with tempfile.TemporaryDirectory() as tmp:
        try:
            vaelab.train(
                "cvae2",
                out=Path(tmp) / "run",
                data_dir=args.data_dir,
                progress=False,
                log=lambda line: None,
                callbacks=[on_epoch],
                **recipe,
            )
        except Reached:
            pass
    if reached is None:
        print(f"did not reach {args.target} in {args.max_epochs} epochs")
        return 1
    epoch, wall, elbo = reached
    print(f"reached {elbo:.2f} >= {args.target} after {epoch} epochs: {wall:.1f} s")

    if args.reference:
        mnist = Path(args.data_dir) / "mnist"
        print("TensorFlow recipe (seed 003: batch 32, Adam 1e-4, 10 epochs) on the same machine:", flush=True)
        proc = subprocess.Popen(
            [args.reference, "benchmarks/tf_reference.py", "--recipe", str(mnist)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        last = None
        for line in proc.stdout:
            last = json.loads(line)
            if "epoch" in last:
                print(
                    f"  epoch {last['epoch']}: test ELBO {last['test_elbo']:.2f} at {last['wall_seconds']:.1f} s",
                    flush=True,
                )
        if proc.wait() != 0 or last is None:
            raise SystemExit("the TensorFlow reference failed")
        print(
            f"TensorFlow: {last['test_elbo']:.2f} after 10 epochs in {last['wall_seconds']:.1f} s; "
            f"vaelab reached {args.target} in {wall / last['wall_seconds']:.2f} of that time "
            f"(1/{last['wall_seconds'] / wall:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

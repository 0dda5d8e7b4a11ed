"""Cost against problem size: training time against the number of images, evaluation time against K.

    python -m benchmarks.scaling [--sizes 5000 10000] [--k 100 200] [--repeats 5]

Training: one epoch of `vaelab train --preset cvae2 --limit N` for each N
(the epoch's own seconds from metrics.jsonl: the optimiser steps only, not
the validation pass, which does not depend on N). Evaluation: the IWAE bound
on 64 images for each K. Prints each time, the time per image (or per
(image, sample) pair), and the ratio of the last size to the first next to
the ratio of the sizes: linear cost means the two agree. Uses the real MNIST
under VAELAB_DATA_DIR for training (it is skipped without it). Best of
--repeats, the sizes interleaved: a one-epoch run lasts seconds, and on a
shared machine its speed can swing by a third from one run to the next, so
two or three repeats are not enough to see the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000], help="training images per epoch")
    p.add_argument("--k", type=int, nargs="+", default=[100, 200], help="IWAE samples per image")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA_DIR"))
    args = p.parse_args(argv)

    import torch

    import vaelab
    from vaelab.evaluation.scores import iwae_per_image
    from vaelab.models import build_model
    from vaelab.presets import PRESETS
    from vaelab.runtime import tune_cpu_allocator

    tune_cpu_allocator()
    rows = []
    if args.data_dir:
        seconds = {n: float("inf") for n in args.sizes}
        for _ in range(args.repeats):
            for n in args.sizes:
                with tempfile.TemporaryDirectory() as tmp:
                    vaelab.train(
                        "cvae2",
                        out=Path(tmp) / "run",
                        data_dir=args.data_dir,
                        limit=n,
                        epochs=1,
                        sample_grid=0,
                        progress=False,
                        log=lambda line: None,
                    )
                    record = json.loads((Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()[-1])
                seconds[n] = min(seconds[n], record["seconds"])
        rows.append(("train cvae2, images", args.sizes, [seconds[n] for n in args.sizes]))
    else:
        print("training: skipped (no VAELAB_DATA_DIR)")

    cfg = PRESETS["cvae2"].config
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.objective, (1, 28, 28)).eval()
    images = (torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.8).to(torch.uint8) * 255
    iwae_per_image(model, images[:4], 10)  # warm-up
    seconds = {k: float("inf") for k in args.k}
    for _ in range(args.repeats):
        for k in args.k:
            start = time.perf_counter()
            iwae_per_image(model, images, k)
            seconds[k] = min(seconds[k], time.perf_counter() - start)
    rows.append(("IWAE on 64 images, K", args.k, [seconds[k] for k in args.k]))

    print(f"{'what':<22}{'size':>8}{'seconds':>10}{'us/unit':>10}")
    for what, sizes, times in rows:
        for size, t in zip(sizes, times):
            per = t / size / (64 if what.startswith("IWAE") else 1) * 1e6
            print(f"{what:<22}{size:>8}{t:>10.2f}{per:>10.1f}")
        print(f"{'':<22}size x{sizes[-1] / sizes[0]:.2f} -> time x{times[-1] / times[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

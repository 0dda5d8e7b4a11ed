"""The data pipeline alone: loading a dataset, then batching it for training (no model).

    python -m benchmarks.data [--dataset mnist] [--batch 32 128] [--epochs 2]

Prints the seconds to load and prepare the training split (decompressing and
parsing the files, binarising, the validation split), then, per batch size
and binarisation, the images/s of iterating whole epochs of `Batches` as the
training loop does: one random permutation per epoch, one uint8 gather and
one float conversion per batch (and one Bernoulli draw per batch for dynamic
binarisation). Uses the real files under VAELAB_DATA_DIR (or --data-dir);
without them, 60,000 random 28x28 uint8 images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA_DIR"))
    p.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from vaelab.config import DataConfig
    from vaelab.runtime import tune_cpu_allocator
    from vaelab.training.batches import Batches
    from vaelab.training.data import prepare_splits

    tune_cpu_allocator()
    start = time.perf_counter()
    if args.data_dir:
        images = prepare_splits(DataConfig(name=args.dataset, binarize="none", val_size=0), args.data_dir).train.images
        source = f"{args.dataset} from {args.data_dir}"
    else:
        images = torch.randint(
            0, 256, (60_000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
        )
        source = "60,000 random 28x28 images (no VAELAB_DATA_DIR)"
    print(f"{source}: {len(images):,} images {tuple(images.shape[1:])} loaded in {time.perf_counter() - start:.2f} s")
    print(f"{'batch':>6} {'binarize':>9} {'img/s':>12} {'us/batch':>9}")
    for batch in args.batch:
        for dynamic in (False, True):
            batches = Batches(images, batch, shuffle=True, dynamic_binarize=dynamic, seed=0)
            start = time.perf_counter()
            n = 0
            for epoch in range(1, args.epochs + 1):
                for x in batches.epoch(epoch):
                    n += len(x)
            seconds = time.perf_counter() - start
            steps = len(batches) * args.epochs
            kind = "dynamic" if dynamic else "static"
            print(f"{batch:>6} {kind:>9} {n / seconds:>12,.0f} {seconds / steps * 1e6:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a hierarchy's samples lose to its reconstructions: the Fréchet distance of images that keep a run's
top latent groups down to each resolution and draw the groups below from their priors; and of samples whose
top levels come from a fitted Gaussian instead of the prior (ex-post density estimation, `vaelab.models.expost`).

    python -m benchmarks.levels RUN [--n 2000] [--expost-n 20000] [--seed 0] [--data-dir DIR]

For keep = 0 (plain samples), the groups down to each resolution (`VAE.conditional_sample`, the rows of
`vaelab plot RUN --only levels`) and every group (the reconstructions), N images are made from N training
images (images N to 2N of the training split) and compared with N other training images (0 to N) in the
features of the dataset's classifier, the one `vaelab evaluate` caches and uses. The drop from one row to the
next is what the prior of that level loses against the posterior. With `--expost-n M` (0: skipped), each
level's row also gives the Fréchet distance of N samples whose groups down to that level come from a Gaussian
fitted to their posterior means on M further training images (from image 2N on; "-" where it cannot be
fitted: fewer images than its dims, or too little memory): what `vaelab sample --expost-levels L` draws.
Training images only: a diagnosis made on the test set would end up choosing settings on it. Prints one table.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

import vaelab
from vaelab.errors import VaelabError
from vaelab.evaluation.classifier import load_or_train
from vaelab.evaluation.frechet import frechet_distance
from vaelab.models.expost import EXPOST_N, fit_expost
from vaelab.training.data import load_split

BATCH = 250


def measure(
    run: str, n: int, seed: int, data_dir: str | None, expost_n: int = 0
) -> list[tuple[int, str, float, float | None]]:
    """(keep, what is kept, Fréchet distance, that of samples with those groups from a fitted Gaussian or None)
    for each row."""
    model = vaelab.load(run)
    model.eval()
    raw = dataclasses.replace(model.config.data, binarize="none")
    train, test = load_split(model.config.data, "train", data_dir), load_split(raw, "test", data_dir)
    if len(train) < 2 * n:
        raise SystemExit(f"the training split has {len(train)} images: --n {n} needs {2 * n}")
    classifier = load_or_train(raw.name, load_split(raw, "train", data_dir), test)
    real = classifier.features(train.images[:n], batch_size=BATCH)

    def distance(images: torch.Tensor) -> float:
        return frechet_distance(classifier.features(images.float(), batch_size=BATCH), real)

    sources, fit = train.images[n : 2 * n], train.images[2 * n : 2 * n + expost_n]
    shapes = model.group_shapes
    rows = []
    for level, keep in enumerate([0, *model.levels]):
        generator = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            if keep == 0:
                images = torch.cat([model.sample(min(BATCH, n - i), generator=generator) for i in range(0, n, BATCH)])
            else:
                parts = [sources[i : i + BATCH] for i in range(0, n, BATCH)]
                images = torch.cat([model.conditional_sample(x, keep, generator=generator) for x in parts])
        fitted = None
        if keep and expost_n:
            try:
                expost = fit_expost(model, fit, level)
            except VaelabError:  # fewer images than dims, or more memory than the machine has: "-"
                expost = None
            if expost is not None:
                with torch.inference_mode():
                    fitted = distance(model.sample(n, generator=torch.Generator().manual_seed(seed), expost=expost))
        r = shapes[keep - 1][-1] if keep else None
        what = "nothing: samples" if keep == 0 else f"groups 1-{keep}, down to {r}x{r}"
        if keep == len(shapes):
            what = f"all {keep} groups: reconstructions"
        rows.append((keep, what, distance(images), fitted))
    return rows


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.levels", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder or checkpoint of a hierarchical VAE")
    p.add_argument("--n", type=int, default=2000, help="images per set (default 2000)")
    p.add_argument("--expost-n", type=int, default=EXPOST_N, help=f"0: no fitted Gaussians (default {EXPOST_N})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    print(f"Fréchet distance against {args.n:,} training images, {args.n:,} images per row ({args.run})")
    print(f"{'kept':<40} {'FD':>8} {'fitted top':>11}")
    for _, what, fd, fitted in measure(args.run, args.n, args.seed, args.data_dir, args.expost_n):
        print(f"{what:<40} {fd:>8.2f} {'-' if fitted is None else f'{fitted:.2f}':>11}", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))

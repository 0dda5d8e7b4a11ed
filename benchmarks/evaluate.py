"""Evaluation throughput: the ELBO pass and the IWAE bound, against the machine's measured matrix peak.

    python -m benchmarks.evaluate [--cases elbo iwae:1000:256 iwae:1000:4096] [--run RUN] [--images 64]
                                  [--repeats 3] [--device cpu]

A case is `elbo` (one pass of `vaelab evaluate`'s ELBO over --images x 16
images) or `iwae:K:CHUNK` (the IWAE bound with K samples per image, decoding
at most CHUNK (image, sample) pairs at once). Prints images/s (and (image,
sample) pairs/s for IWAE), the FLOPs per image counted with
torch.utils.flop_counter, GFLOP/s and its fraction of the fp32 matmul peak
measured in the same run, and the peak memory above the process's size
before the timed calls (resident set size on the CPU, max allocated on
CUDA): the chunk bounds it. Each case runs in a fresh process. Without
--run, a freshly initialised cvae2 (seed 0) scores random binary images:
the cost does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import count_flops, in_fresh_process, matmul_peak_gflops, peak_memory_mb, reset_peak_memory, time_best

DEFAULT_CASES = ["elbo", "iwae:1000:256", "iwae:1000:4096"]


def worker(args: argparse.Namespace) -> dict:
    import torch

    from vaelab.evaluation.scores import elbo_terms_per_image, iwae_per_image
    from vaelab.models import build_model
    from vaelab.presets import PRESETS
    from vaelab.runtime import prepare_device

    device = torch.device(args.device)
    prepare_device(device)
    if args.run:
        import vaelab

        model = vaelab.load(args.run, device=args.device)
    else:
        cfg = PRESETS["cvae2"].config
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.objective, (1, 28, 28)).to(device).eval()
    kind, *params = args.worker.split(":")
    g = torch.Generator().manual_seed(0)
    n = args.images * 16 if kind == "elbo" else args.images
    images = (torch.rand(n, *model.image_shape, generator=g) > 0.8).to(torch.uint8) * 255
    if kind == "elbo":
        k, chunk = 1, None
        run = lambda imgs: elbo_terms_per_image(model, imgs, batch_size=1000)  # noqa: E731
    else:
        k, chunk = int(params[0]), int(params[1])
        run = lambda imgs: iwae_per_image(model, imgs, k, chunk=chunk, batch_size=args.images)  # noqa: E731
    baseline = reset_peak_memory(device)  # before the first pass, so the chunked passes' memory counts
    flops_per_image = count_flops(model, lambda: run(images[:4])) / 4  # also the warm-up
    seconds = time_best(lambda: run(images), args.repeats, device)
    return {
        "case": args.worker,
        "images": n,
        "seconds": seconds,
        "images_per_s": n / seconds,
        "pairs_per_s": n * k / seconds,
        "mflop_per_image": flops_per_image / 1e6,
        "gflops": flops_per_image * n / seconds / 1e9,
        "peak_mb": peak_memory_mb(device, baseline),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="elbo or iwae:K:CHUNK")
    p.add_argument("--run", help="a trained run to score with (default: a fresh cvae2)")
    p.add_argument("--images", type=int, default=64, help="images per IWAE measurement (x16 for elbo)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--worker", metavar="CASE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    for case in args.cases:
        kind, *params = case.split(":")
        if not (case == "elbo" or (kind == "iwae" and len(params) == 2 and all(x.isdigit() for x in params))):
            raise SystemExit(f"bad case {case!r}: expected elbo or iwae:K:CHUNK")
    peak = matmul_peak_gflops(args.device)
    mem = "peak MiB (CUDA)" if args.device.startswith("cuda") else "peak RSS MiB"
    print(
        f"evaluation of cvae2 ({args.run or 'fresh weights'}) on {args.device}; "
        f"fp32 matmul peak {peak:.0f} GFLOP/s (2048^3)"
    )
    print(
        f"{'case':<16}{'images':>8}{'seconds':>9}{'img/s':>9}{'pairs/s':>11}{'MFLOP/img':>11}{'GFLOP/s':>9}"
        f"{'of peak':>9}{mem:>15}"
    )
    for case in args.cases:
        cmd = ["--worker", case, "--images", str(args.images), "--repeats", str(args.repeats), "--device", args.device]
        r = in_fresh_process("benchmarks.evaluate", cmd + (["--run", args.run] if args.run else []))
        print(
            f"{case:<16}{r['images']:>8}{r['seconds']:>9.3f}{r['images_per_s']:>9,.0f}{r['pairs_per_s']:>11,.0f}"
            f"{r['mflop_per_image']:>11.1f}{r['gflops']:>9.1f}{r['gflops'] / peak:>9.0%}{r['peak_mb']:>15.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

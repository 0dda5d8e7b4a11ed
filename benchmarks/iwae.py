"""Throughput and peak memory of the batched IWAE estimate, on a cvae2 model.

    python -m benchmarks.iwae [--run RUN] [--images 32] [--k 100 1000] [--chunk 256 4096] [--repeats 3]

Prints (image, sample) pairs per second, best of --repeats, for every K and
chunk size; the time per pair should not depend on K (cost linear in K),
and the chunk bounds memory. Each configuration runs in a fresh process so
its peak memory is its own: on CPU the peak resident set size above the
process's size just before the timed calls (getrusage), on CUDA
torch.cuda.max_memory_allocated. Without --run, a freshly initialised cvae2
(seed 0) scores random binary 28x28 images: the cost does not depend on
the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(args: argparse.Namespace) -> dict:
    import torch

    from vaelab.evaluation.scores import iwae_per_image
    from vaelab.models import build_model
    from vaelab.presets import PRESETS

    device = torch.device(args.device)
    if args.run:
        import vaelab
        model = vaelab.load(args.run, device=args.device)
    else:
        cfg = PRESETS["cvae2"].config
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.objective, (1, 28, 28)).to(device).eval()
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(args.images, 1, 28, 28, generator=g) > 0.8).to(torch.uint8) * 255
    k, chunk = args.k[0], args.chunk[0]
    run = lambda: iwae_per_image(model, images, k, chunk=chunk, batch_size=args.images)  # noqa: E731
    iwae_per_image(model, images[:2], 2, chunk=chunk)  # warm-up: allocator, kernels
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mb()
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base  # KiB on Linux
    return {"k": k, "chunk": chunk, "images": args.images, "seconds": best,
            "pairs_per_s": args.images * k / best, "peak_mb": peak, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a trained run to score with (default: a fresh cvae2)")
    p.add_argument("--images", type=int, default=32, help="images per measurement (default 32)")
    p.add_argument("--k", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--chunk", type=int, nargs="+", default=[256, 4096])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    mem = "peak MiB (CUDA allocated)" if args.device.startswith("cuda") else "peak RSS MiB above baseline"
    print(f"IWAE on cvae2 ({args.run or 'fresh weights'}), {args.images} images, {args.device}, "
          f"best of {args.repeats}")
    print(f"{'K':>6} {'chunk':>7} {'seconds':>9} {'pairs/s':>10} {mem:>28}")
    for k in args.k:
        for chunk in args.chunk:
            cmd = [sys.executable, "-m", "benchmarks.iwae", "--worker", "--k", str(k), "--chunk", str(chunk),
                   "--images", str(args.images), "--repeats", str(args.repeats), "--device", args.device]
            cmd += ["--run", args.run] if args.run else []
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=root)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{k:>6} {chunk:>7} {r['seconds']:>9.3f} {r['pairs_per_s']:>10,.0f} {r['peak_mb']:>28.1f}")
    print(f"torch threads: {r['threads']}")


if __name__ == "__main__":
    if __package__ in (None, ""):  # `python benchmarks/iwae.py`: make `benchmarks` importable for the workers
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()

"""Training throughput of the presets against this machine's measured matrix peak.

    python -m benchmarks.train [--cases cvae2:32 cvae2:128 mlp2 conv16 cifar128] [--steps 60] [--repeats 3]
                               [--device cpu]

For each case (PRESET or PRESET:BATCH; the preset's own batch size by
default) prints images/s and ms per step (best of --repeats timed blocks of
--steps optimiser steps, after warm-up), the FLOPs of one training image
(forward + backward, counted with torch.utils.flop_counter), the achieved
GFLOP/s, that as a fraction of the fp32 matrix-product peak measured in the
same run, and the peak memory (resident set size on CPU, max allocated on
CUDA). Each case runs in a fresh process so its peak memory is its own. The
step is vaelab's own `train_step`, on random images of the preset's shape,
so the data pipeline is not included. Timings mean nothing while other
processes use the cores: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

DEFAULT_CASES = ["cvae2:32", "cvae2:128", "mlp2", "conv16", "cifar128"]
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def matmul_peak_gflops(device, n: int = 2048, repeats: int = 10) -> float:
    """fp32 GFLOP/s of an n x n matrix product: this machine's practical peak."""
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def worker(args: argparse.Namespace) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vaelab.models import build_model
    from vaelab.presets import PRESETS
    from vaelab.training.optim import build_optimizer
    from vaelab.training.step import train_step

    name, _, batch = args.case.partition(":")
    cfg = PRESETS[name].config
    batch_size = int(batch) if batch else cfg.train.batch_size
    device = torch.device(args.device)
    shape = SHAPES[cfg.data.name]
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.objective, shape).to(device)
    optimizer = build_optimizer(model.parameters(), cfg.train)
    x = torch.rand(batch_size, *shape, device=device)
    if cfg.data.binarize != "none":
        x = torch.bernoulli(x)

    with FlopCounterMode(display=False) as counter:
        train_step(model, optimizer, x)
    flops_per_image = counter.get_total_flops() / batch_size

    for _ in range(5):  # warm-up: allocator, kernels, optimiser state
        train_step(model, optimizer, x)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    best = float("inf")
    for _ in range(args.repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            train_step(model, optimizer, x)
        _sync(device)
        best = min(best, (time.perf_counter() - start) / args.steps)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"case": f"{name}:{batch_size}", "ms_per_step": best * 1e3, "images_per_s": batch_size / best,
            "mflop_per_image": flops_per_image / 1e6, "gflops": flops_per_image * batch_size / best / 1e9,
            "peak_mb": peak_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="PRESET or PRESET:BATCH")
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per timed block")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", metavar="CASE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.case = args.worker
        print(json.dumps(worker(args)))
        return 0

    import torch

    peak = matmul_peak_gflops(args.device)
    print(f"device {args.device}, {torch.get_num_threads()} threads; fp32 matmul peak {peak:.0f} GFLOP/s (2048^3)")
    print(f"{'case':<14}{'img/s':>9}{'ms/step':>9}{'MFLOP/img':>11}{'GFLOP/s':>9}{'of peak':>9}{'peak MB':>9}")
    for case in args.cases:
        cmd = [sys.executable, "-m", "benchmarks.train", "--worker", case, "--steps", str(args.steps),
               "--repeats", str(args.repeats), "--device", args.device]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{r['case']:<14}{r['images_per_s']:>9.0f}{r['ms_per_step']:>9.2f}{r['mflop_per_image']:>11.1f}"
              f"{r['gflops']:>9.1f}{r['gflops'] / peak:>9.0%}{r['peak_mb']:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

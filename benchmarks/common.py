"""What every benchmark shares: the machine's measured peak, device syncs, memory, fresh worker processes."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def matmul_peak_gflops(device: str = "cpu", n: int = 2048, repeats: int = 10, dtype=None) -> float:
    """GFLOP/s of an n x n matrix product in `dtype` (default fp32): this machine's practical peak, measured now."""
    import torch

    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(device) -> float:
    """Start a peak-memory measurement; returns the baseline (MiB) that `peak_memory_mb` subtracts on the CPU."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return 0.0
    return rss_mb()


def peak_memory_mb(device, baseline: float = 0.0) -> float:
    """Peak memory since `reset_peak_memory`: CUDA max allocated, or on the CPU the process's peak
    resident set size minus `baseline` (pass 0 for the whole process's peak)."""
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline  # KiB on Linux


def rss_mb() -> float:
    """The process's resident set size now (MiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def time_best(fn, repeats: int, device) -> float:
    """Best wall time of `repeats` calls of fn (seconds), synchronising the device around each."""
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def in_fresh_process(module: str, args: list[str]) -> dict:
    """Run `python -m module args` (a benchmark's --worker mode) and return the JSON of its last line.

    Each measurement gets its own process, so its peak memory is its own and
    no earlier case has warmed (or fragmented) its allocator.
    """
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{module} {' '.join(args)} failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def count_flops(model, fn) -> int:
    """FLOPs of one call of fn(), counted with torch.utils.flop_counter on the model's plain layers.

    The arithmetic is the model's, not the kernel's: vaelab's transposed
    convolutions (`models/layers.py`) compute the same thing as the plain
    `nn.ConvTranspose2d` with other kernels (a grouped convolution for a
    narrow output, whose backward the counter's formula overcounts: 46.7
    instead of 32.7 MFLOP per cvae2 image; a bias gradient summed apart),
    so they are counted as the plain layer they equal.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    swapped = [
        (m, type(m))
        for m in model.modules()
        if isinstance(m, torch.nn.ConvTranspose2d) and type(m) is not torch.nn.ConvTranspose2d
    ]
    for m, _ in swapped:
        m.__class__ = torch.nn.ConvTranspose2d
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        for m, cls in swapped:
            m.__class__ = cls
    return counter.get_total_flops()

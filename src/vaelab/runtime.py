"""How vaelab uses the machine: the CPU allocator, mixed precision and the optimiser kernels.

Everything here is chosen by measurement on a 2-core CPU (see
`benchmarks/` and the README's speed section). None of the defaults
changes what a run computes beyond float rounding, except the training
precision: `auto` trains convolutional models in bf16 autocast on CPUs that
compute bf16 in hardware, where it trains them 1.4x (conv16) to 2.0x
(keras-conv2) faster at batch 32 and cvae2's 10-epoch test ELBO moves by
less than 0.1 nat; `--precision fp32` keeps plain fp32 everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import time

import torch

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_allocator_tuned = False


def tune_cpu_allocator() -> bool:
    """Keep freed tensor memory in the process instead of handing it back to the OS every step.

    glibc serves large blocks with mmap (above a threshold it keeps moving)
    and trims the heap top on free, so each step's activations (a few MB)
    land on fresh pages: training cvae2 at batch 32 took 800 to 6,000 page
    faults per step, and a step 15 to 25 ms depending on where glibc's
    threshold happened to be. A fixed 32 MiB mmap threshold and no trimming
    give 0 faults per step (measured with getrusage). The process keeps its
    peak heap for reuse. Only glibc is touched; an allocator the user chose
    (LD_PRELOAD, MALLOC_* variables) is left alone. Returns whether it applied.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "LD_PRELOAD" in os.environ or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    except (OSError, AttributeError):
        return False
    _allocator_tuned = ok
    return ok


def prepare_device(device: torch.device, threads: int | None = None) -> str:
    """Per-process settings for computing on `device`: the allocator on the CPU, and the CPU threads
    (`threads`, else `resolve_threads`' choice). Returns what was chosen, for the run's first line."""
    global _adaptive
    if device.type == "cpu":
        tune_cpu_allocator()
    count, why = resolve_threads(threads)
    torch.set_num_threads(count)
    _adaptive = threads is None and not os.environ.get("OMP_NUM_THREADS")
    return _threads_text(count, why)


def fewer_threads_if_busy() -> str | None:
    """Look at the machine again and lower the thread count to the cores other processes now leave free,
    when vaelab chose the count itself (no --threads, no OMP_NUM_THREADS): what training does once when it
    slows down (`training.steplog`). Returns what changed, for the log, or None."""
    if not _adaptive:
        return None
    other_cpu_load.cache_clear()
    count, why = resolve_threads(None)
    if count >= torch.get_num_threads():
        return None
    torch.set_num_threads(count)
    return _threads_text(count, why)


def more_threads_if_idle() -> str | None:
    """After `fewer_threads_if_busy`: look at the machine again and raise the thread count back when the other
    processes have left cores free (what training does at each epoch's start while it runs on fewer threads
    than it chose at first). Returns what changed, for the log, or None; costs nothing at the full count."""
    if not _adaptive or torch.get_num_threads() >= _default_threads:
        return None
    other_cpu_load.cache_clear()
    count, why = resolve_threads(None)
    if count <= torch.get_num_threads():
        return None
    torch.set_num_threads(count)
    return _threads_text(count, why)


def _threads_text(count: int, why: str) -> str:
    return f"{count} thread{'s' if count > 1 else ''} ({why})"


_default_threads = torch.get_num_threads()  # torch's own choice at import: one per core (or OMP_NUM_THREADS)
_adaptive = False  # whether prepare_device chose the thread count itself (so it may lower it later)
THREAD_SAMPLE_S = 0.25  # how long `other_cpu_load` watches the machine


def resolve_threads(requested: int | None) -> tuple[int, str]:
    """How many CPU threads to compute with, and why: `requested`; else OMP_NUM_THREADS when the user set it;
    else one per core that other processes leave free, at least one.

    Measured on 2 cores (`python -m benchmarks threads`, docs/performance.md):
    on an idle machine 2 threads train conv16 (batch 128) 1.8x faster than 1,
    cvae2 (batch 32) about as fast; with one other busy process 2 threads
    fall to a third or less of their idle speed (OpenMP's threads wait for
    each other at every operation, and one waiting for the CPU stalls all),
    while 1 thread keeps its idle speed: 2.8x (cvae2) and 2.0x (conv16)
    faster than 2; with six, 5x to 7x. This choice ran at 0.93x to 1.16x of
    the better fixed count in every case. The machine is looked at when the
    command starts; a training that slows down later looks again
    (`fewer_threads_if_busy`), and while it runs on fewer threads it looks at
    the start of each epoch whether the cores are free again
    (`more_threads_if_idle`); each change is said in one line.
    """
    if requested is not None:
        return requested, "--threads"
    if os.environ.get("OMP_NUM_THREADS"):
        return _default_threads, "OMP_NUM_THREADS"
    others = other_cpu_load()
    if others is None or _default_threads <= 1:
        return _default_threads, "one per core"
    busy = min(_default_threads - 1, round(others))
    if busy == 0:
        return _default_threads, "one per core: the CPU is idle"
    return _default_threads - busy, f"other processes keep {others:.1f} of {_default_threads} cores busy"


@functools.cache
def other_cpu_load(seconds: float = THREAD_SAMPLE_S) -> float | None:
    """How many cores other processes kept busy over the next `seconds` (Linux's /proc/stat, less this
    process's own CPU time); None where there is no /proc/stat. Measured once per process."""

    def busy_and_own() -> tuple[float, float, float]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        own = os.times()
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()

    try:
        busy0, own0, t0 = busy_and_own()
        time.sleep(seconds)
        busy1, own1, t1 = busy_and_own()
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


def is_channels_last(model: torch.nn.Module) -> bool:
    """Whether the model's 4-D (convolution) weights are held channels-last; False when it has none."""
    weights = [p for p in model.parameters() if p.dim() == 4]
    return bool(weights) and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


def batch_memory_format(model: torch.nn.Module) -> torch.memory_format:
    """The layout to hand `model` its images in: the same as its convolution weights."""
    return torch.channels_last if is_channels_last(model) else torch.contiguous_format


def memory_format_for(model: torch.nn.Module, device: torch.device) -> torch.memory_format:
    """Channels-last for convolutional models on the CPU, where oneDNN runs it faster; else contiguous.

    Measured on 2 cores (`python -m benchmarks train --cases cvae2:32 cvae2:32:nchw`):
    cvae2 trains 1.06x to 1.34x faster channels-last in fp32 (runs differ on a
    shared machine), and bf16 only pays off channels-last (1.25x at batch 32
    and 1.5x at 128 over fp32, against 0.9x to 1.0x in NCHW). The values
    computed are the same up to float rounding.
    """
    return torch.channels_last if device.type == "cpu" and has_convolutions(model) else torch.contiguous_format


def has_convolutions(model: torch.nn.Module) -> bool:
    """Whether the model has 4-D (convolution) weights."""
    return any(p.dim() == 4 for p in model.parameters())


def place(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on `device`, in the memory layout that trains fastest there."""
    return model.to(device=device, memory_format=memory_format_for(model, device))


PRECISIONS = ("fp32", "bf16")  # what a step runs in; the config may also say "auto"
_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}  # x86 instructions that compute in bf16


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX-BF16), from /proc/cpuinfo.

    Elsewhere (other systems, other CPUs) bf16 is emulated and slower than
    fp32, so the answer is False.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(_NATIVE_BF16_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device, model: torch.nn.Module) -> str:
    """The precision `model` trains in: "auto" is bf16 for a convolutional model on a CPU with native bf16,
    else fp32.

    On such a CPU (2 cores with AMX) bf16 autocast trains the convolutional
    presets 1.44x (conv16) to 2.0x (keras-conv2) faster than fp32 at batch 32
    (cvae2 1.45x, cifar128 1.70x; `python -m benchmarks train`) and leaves
    cvae2's 10-epoch test ELBO within 0.1 nat of fp32. A model without
    convolutions (mlp2) multiplies matrices too small for bf16 to repay its
    casts: mlp2 trains 0.90x as fast in bf16 at its batch of 64 (0.79x at 32,
    1.21x at 256), so "auto" keeps it in fp32 (`--precision bf16` still
    chooses bf16). On GPUs "auto" stays fp32: not measured yet.
    """
    if precision == "auto":
        native = device.type == "cpu" and cpu_has_native_bf16()
        return "bf16" if native and has_convolutions(model) else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    return precision


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype the networks compute in at `precision` ("fp32" or "bf16")."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's precision: bf16 autocast (matmuls and convolutions in bf16) or plain fp32.

    Losses stay in fp32 either way: the posterior and the likelihoods cast the
    network outputs to float before any log-density is computed.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def optimizer_kernel(device: torch.device, fused_ok: bool) -> dict[str, bool]:
    """The fastest implementation an optimiser has for `device`: fused (one kernel) or foreach.

    Fused Adam is ~1 ms per step faster than the default per-parameter loop for
    cvae2 on the CPU (10 parameter tensors); both compute the same update.
    """
    if fused_ok and device.type in ("cpu", "cuda"):
        return {"fused": True}
    return {"foreach": True}

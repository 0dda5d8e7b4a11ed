"""Training speed against the number of CPU threads, on an idle machine and on a busy one.

    python -m benchmarks.threads [--cases cvae2:32:auto conv16:128:auto] [--threads CORES 1 auto]
                                 [--load 0 1 2 6] [--steps 40] [--repeats 3]

For every case (as in `benchmarks.train`), every thread setting (a number:
OMP_NUM_THREADS set to it; `auto`: unset, so vaelab chooses, as `vaelab
train` does without --threads) and every load (that many other processes,
each spinning on a core, as other work on a shared machine does), a fresh
process times the training step that `vaelab train` runs. Prints images/s
and, per case and load, each setting against the first (by default one
thread per core, PyTorch's own choice). The busy rows show why a thread
count above the cores left free is a trap: OpenMP's threads wait for each
other at every operation, and one of them waiting for the CPU stalls all.
`vaelab.runtime.resolve_threads` picks its default from these figures (see
docs/performance.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator

from .common import ROOT
from .train import parse_case

SPIN = "while True: pass"


@contextlib.contextmanager
def busy(processes: int) -> Iterator[None]:
    """`processes` other processes spinning on the CPU while the block runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(processes)]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def measure(case: str, threads: str, steps: int, repeats: int) -> float:
    """Images/s of `case` in a fresh process with `threads` OpenMP threads (`auto`: vaelab's choice)."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads != "auto":
        env["OMP_NUM_THREADS"] = threads
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", "--worker", case, "--steps", str(steps), "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    if out.returncode != 0:
        raise SystemExit(f"{case} with {threads} threads failed:\n{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=["cvae2:32:auto", "conv16:128:auto"])
    p.add_argument(
        "--threads",
        nargs="+",
        default=[str(len(os.sched_getaffinity(0))), "1", "auto"],
        help="thread counts, or auto (vaelab's choice); default: one per core, 1, auto",
    )
    p.add_argument("--load", type=int, nargs="+", default=[0, 1, 2, 6], help="other processes spinning on the CPU")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    for case in args.cases:
        parse_case(case)
    for threads in args.threads:
        if threads != "auto" and not (threads.isdigit() and int(threads) >= 1):
            raise SystemExit(f"bad --threads {threads!r}: a number >= 1 or auto")

    print(
        f"{len(os.sched_getaffinity(0))} CPUs; best of {args.repeats} blocks of {args.steps} steps, each case in a "
        f"fresh process; auto: vaelab's choice (`vaelab.runtime.resolve_threads`)"
    )
    print(f"{'case':<18}{'load':>5}{'threads':>9}{'img/s':>9}{'vs first':>12}")
    for case in args.cases:
        for load in args.load:
            with busy(load):
                rates = {t: measure(case, t, args.steps, args.repeats) for t in args.threads}
            base = rates[args.threads[0]]
            for t, rate in rates.items():
                print(f"{case:<18}{load:>5}{t:>9}{rate:>9.0f}{rate / base:>11.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput of the presets against this machine's measured matrix peak.

    python -m benchmarks.train [--cases cvae2:32 cvae2:32:bf16 cvae2:128:bf16 mlp2 conv16 cifar128]
                               [--steps 60] [--repeats 3] [--rounds 1] [--device cpu]
                               [--reference PYTHON_WITH_TF]

A case is PRESET[:BATCH][:PRECISION][:nchw][:compile][:autograd] (the
preset's batch size and fp32 by default; `auto` is what `vaelab train` picks
here; `compile` runs the encoder and decoder through `torch.compile`, which
`vaelab train` does not, and prints the seconds its first step took,
compilation included; `autograd` takes autograd's backward where `vaelab
train` takes the direct step of `vaelab.training.direct`; `compile` implies it).
For each, prints images/s and ms per step (best of
--repeats timed blocks of --steps optimiser steps, after warm-up), the FLOPs
of one training image (forward + backward, counted with
torch.utils.flop_counter), the achieved GFLOP/s, that as a fraction of the
fp32 matrix-product peak measured in the same run, and the peak memory
(resident set size on the CPU, max allocated on CUDA). The step is the one
`vaelab train` runs: the model placed by `vaelab.runtime.place`
(channels-last on the CPU unless the case says nchw), its optimiser kernel,
`train_step` with its guards, on random images of the preset's shape (the
data pipeline is `benchmarks.data`). Each case runs in a fresh process.
--reference times the seed 003 TensorFlow recipe (benchmarks/tf_reference.py)
with that interpreter in the same run, for the side-by-side ratio: best
against best, and round by round (each case against the reference timed in
the same round) with the median of those, which a noisy minute moves less.
Timings mean nothing while other processes use the cores: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from .common import (
    ROOT,
    count_flops,
    in_fresh_process,
    matmul_peak_gflops,
    peak_memory_mb,
    reset_peak_memory,
    sync,
    time_best,
)

DEFAULT_CASES = [
    "cvae2:32",
    "cvae2:32:bf16",
    "cvae2:128",
    "cvae2:128:bf16",
    "cvae2:256:bf16",
    "mlp2",
    "conv16",
    "conv16:128:bf16",
    "cifar128",
    "cifar128:128:bf16",
]
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


CASE_FORMAT = "PRESET[:BATCH][:fp32|bf16|auto][:nchw][:compile][:autograd]"
FLAGS = ("nchw", "compile", "autograd")


def parse_case(case: str) -> tuple[str, int | None, str, set[str]]:
    """'cvae2:128:bf16:compile' -> ('cvae2', 128, 'bf16', {'compile'}); the set holds FLAGS."""
    name, *rest = case.split(":")
    batch, precision, flags = None, "fp32", set()
    for part in rest:
        if part.isdigit():
            batch = int(part)
        elif part in ("fp32", "bf16", "auto"):
            precision = part
        elif part in FLAGS:
            flags.add(part)
        else:
            raise SystemExit(f"bad case {case!r}: expected {CASE_FORMAT}")
    return name, batch, precision, flags


def worker(args: argparse.Namespace) -> dict:
    import torch

    from vaelab.models import build_model
    from vaelab.presets import PRESETS
    from vaelab.runtime import batch_memory_format, place, prepare_device, resolve_precision
    from vaelab.training.optim import build_optimizer
    from vaelab.training.step import train_step

    name, batch, precision, flags = parse_case(args.worker)
    nchw = "nchw" in flags
    cfg = PRESETS[name].config
    batch_size = batch or cfg.train.batch_size
    device = torch.device(args.device)
    prepare_device(device)
    shape = SHAPES[cfg.data.name]
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.objective, shape)
    precision = resolve_precision(precision, device, model)
    model = model.to(device) if nchw else place(model, device)
    optimizer = build_optimizer(model.parameters(), cfg.train)
    x = torch.rand(batch_size, *shape, device=device)
    if cfg.data.binarize != "none":
        x = torch.bernoulli(x)
    x = x.contiguous(memory_format=batch_memory_format(model))  # NCHW for an NCHW model
    direct = not flags & {"compile", "autograd"}  # compiled nets run under autograd
    step = lambda: train_step(model, optimizer, x, precision=precision, direct=direct)  # noqa: E731

    # counted on the autograd step: the direct one computes the same (tests/training/test_direct.py) through
    # fused oneDNN calls that the counter does not know
    flops_per_image = (
        count_flops(model, lambda: train_step(model, optimizer, x, precision=precision, direct=False)) / batch_size
    )
    first_step_s = None
    if "compile" in flags:
        for net in (model.encoder, model.decoder):  # in place: the parameters keep their names
            net.compile(dynamic=False)
        start = time.perf_counter()
        step()
        sync(device)
        first_step_s = time.perf_counter() - start
    for _ in range(5):  # warm-up: allocator, kernels, optimiser state
        step()
    reset_peak_memory(device)

    def block():
        for _ in range(args.steps):
            step()

    best = time_best(block, args.repeats, device) / args.steps
    sync(device)
    return {
        "case": f"{name}:{batch_size}:{precision}" + "".join(f":{f}" for f in FLAGS if f in flags),
        "ms_per_step": best * 1e3,
        "images_per_s": batch_size / best,
        "mflop_per_image": flops_per_image / 1e6,
        "gflops": flops_per_image * batch_size / best / 1e9,
        "peak_mb": peak_memory_mb(device),
        "first_step_s": first_step_s,
    }


def reference(python: str, steps: int, repeats: int) -> dict:
    """The TensorFlow recipe's step rate at batch 32, timed by another interpreter."""
    out = subprocess.run(
        [python, "benchmarks/tf_reference.py", "--steps", str(steps * 3), "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if out.returncode != 0:
        raise SystemExit(f"the TensorFlow reference failed:\n{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help=CASE_FORMAT)
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per timed block")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every case this many times, interleaved; keep the best"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference", metavar="PYTHON", help="a Python with TensorFlow: time the seed 003 recipe too")
    parser.add_argument("--worker", metavar="CASE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    import torch

    for case in args.cases:
        parse_case(case)  # fail on a typo before anything runs
    peak = matmul_peak_gflops(args.device)
    print(
        f"device {args.device}, {torch.get_num_threads()} threads; fp32 matmul peak {peak:.0f} GFLOP/s (2048^3); "
        f"best of {args.rounds} round(s), the cases interleaved; an `auto` case shows what `vaelab train` picks"
    )
    best: dict[str, dict] = {}
    ratios: dict[str, list[float]] = {case: [] for case in args.cases}  # against the reference in the same round
    for _ in range(args.rounds):  # interleaved, so a slow minute on a shared machine hits every case alike
        this_round = {}
        for case in args.cases:
            this_round[case] = in_fresh_process(
                "benchmarks.train",
                ["--worker", case, "--steps", str(args.steps), "--repeats", str(args.repeats), "--device", args.device],
            )
        if args.reference:
            this_round["reference"] = reference(args.reference, args.steps, args.repeats)
            for case in args.cases:
                ratios[case].append(this_round[case]["images_per_s"] / this_round["reference"]["images_per_s"])
        for case, r in this_round.items():
            if r["images_per_s"] > best.get(case, {}).get("images_per_s", 0):
                best[case] = r
    print(f"{'case':<22}{'img/s':>9}{'ms/step':>9}{'MFLOP/img':>11}{'GFLOP/s':>9}{'of peak':>9}{'peak MB':>9}")
    for case in args.cases:
        r = best[case]
        print(
            f"{r['case']:<22}{r['images_per_s']:>9.0f}{r['ms_per_step']:>9.2f}{r['mflop_per_image']:>11.1f}"
            f"{r['gflops']:>9.1f}{r['gflops'] / peak:>9.0%}{r['peak_mb']:>9.0f}"
        )
    for case in args.cases:
        if best[case]["first_step_s"] is not None:
            print(f"{best[case]['case']}: first step {best[case]['first_step_s']:.1f} s, compilation included")
    cvae2 = [best[c] for c in args.cases if c.startswith("cvae2")]
    if cvae2:
        fastest = max(cvae2, key=lambda r: r["images_per_s"])
        print(f"fastest cvae2 case: {fastest['case']} at {fastest['images_per_s']:.0f} img/s")
    if args.reference:
        ref = best["reference"]
        print(
            f"{ref['case']:<22}{ref['images_per_s']:>9.0f}{ref['ms_per_step']:>9.2f}   (TensorFlow {ref['tensorflow']})"
        )
        for case in args.cases:
            if case.startswith("cvae2"):
                r = best[case]
                print(
                    f"  {r['case']:<20} {r['images_per_s'] / ref['images_per_s']:.2f}x the TensorFlow recipe "
                    f"(best against best; round by round: {', '.join(f'{x:.2f}' for x in ratios[case])}, "
                    f"median {statistics.median(ratios[case]):.2f}x)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

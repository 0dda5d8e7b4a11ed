"""Training speed of the residual networks (`resnet`, `hvae`) in fp32 and bf16, NCHW and channels-last.

    python -m benchmarks blocks [--cases resnet-mnist resnet-mnist:w64 hvae-mnist hvae-mnist:w64 hvae-cifar]
                                [--variants fp32-nchw fp32-cl bf16-nchw bf16-cl] [--compile]
                                [--batch 128] [--steps 5] [--repeats 5] [--warmup 3] [--rounds 1]
                                [--threads N] [--device cpu]

A case is NAME[:wWIDTH][:dDEPTH], NAME one of `CASES` (resnet-mnist,
hvae-mnist, hvae-cifar), at its own width and depth unless the case says
otherwise (`resnet-mnist:w64` is resnet-mnist at width 64).
Each (case, variant) runs in a fresh process (its peak memory is
its own, no other variant has warmed its allocator) and times the training
step `vaelab train` runs for these models: autograd's forward and backward,
the gradient guards and the fused Adam update (`train_step`, under the step's
noise), on random images of the case's shape (binary for a Bernoulli
likelihood, 8-bit for the others), the model and its batch in the variant's
layout (`cl`: channels-last) and the forward pass in its precision (`bf16`:
bf16 autocast). It prints per row images/s and ms per step (the median of
--repeats timed blocks of --steps steps, after --warmup steps), the speed
against fp32-nchw of the same case, the parameters, the GFLOP of one step
(counted once with torch.utils.flop_counter: convolutions and matrix products,
forward and backward; GELU, pooling and the optimiser are not counted), the
GFLOP/s achieved, that as a fraction of the matrix-product peak of the row's
dtype (2048^3 in fp32 and in bf16, measured once by the run's own process,
with the thread count it hands every worker), and the peak memory (the worker's whole resident set on the
CPU, torch's own included, as `benchmarks.train` reports it; max allocated
on CUDA). The row `vaelab train` would pick here (precision `auto`, its
layout) is starred. --compile adds, per case, the fastest variant with the
model's forward through `torch.compile`: its first step (compilation
included) is printed apart and left out of the timing. --rounds runs every
row that many times, interleaved, and keeps the median of the rounds (the
compiled rows run once, after the rounds).
Timings mean nothing while other processes use the cores: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time

from .common import (
    count_flops,
    in_fresh_process,
    matmul_peak_gflops,
    peak_memory_mb,
    reset_peak_memory,
    sync,
    time_best,
)


@dataclasses.dataclass(frozen=True)
class Case:
    net: str  # encoder and decoder
    shape: tuple[int, int, int]
    width: int
    depth: int
    resolutions: tuple[int, ...]
    latent_dim: int  # resnet: the latent vector; hvae: each group's channels
    likelihood: str
    groups: int = 1


CASES = {
    "resnet-mnist": Case("resnet", (1, 28, 28), 32, 2, (14, 7), 32, "bernoulli"),
    "hvae-mnist": Case("hvae", (1, 28, 28), 32, 1, (14, 7, 1), 8, "bernoulli", groups=2),
    "hvae-cifar": Case("hvae", (3, 32, 32), 64, 2, (16, 8, 4, 1), 16, "discretized-logistic-mixture", groups=2),
}
DEFAULT_CASES = ["resnet-mnist", "resnet-mnist:w64", "hvae-mnist", "hvae-mnist:w64", "hvae-cifar"]
VARIANTS = ["fp32-nchw", "fp32-cl", "bf16-nchw", "bf16-cl"]  # PRECISION-LAYOUT; the first is the baseline
COMPILED = "+compile"
CASE_FORMAT = f"NAME[:wWIDTH][:dDEPTH], NAME one of {', '.join(CASES)}"


def parse_case(text: str) -> tuple[str, Case]:
    """'hvae-mnist:w64' -> ('hvae-mnist:w64:d1', hvae-mnist's Case at width 64): the full name and the case."""
    name, *rest = text.split(":")
    if name not in CASES:
        raise SystemExit(f"bad case {text!r}: expected {CASE_FORMAT}")
    case = CASES[name]
    for part in rest:
        if part[:1] in ("w", "d") and part[1:].isdigit() and int(part[1:]) >= (1 if part[0] == "w" else 0):
            case = dataclasses.replace(case, **{"width" if part[0] == "w" else "depth": int(part[1:])})
        else:
            raise SystemExit(f"bad case {text!r}: expected {CASE_FORMAT}")
    return f"{name}:w{case.width}:d{case.depth}", case


def parse_variant(text: str) -> tuple[str, bool, bool]:
    """'bf16-cl+compile' -> ('bf16', True, True): precision, channels-last, compiled."""
    base = text.removesuffix(COMPILED)
    if base not in VARIANTS:
        raise SystemExit(f"bad variant {text!r}: expected one of {', '.join(VARIANTS)} (+compile)")
    precision, layout = base.split("-")
    return precision, layout == "cl", text.endswith(COMPILED)


def model_config(case: Case):
    from vaelab.config import ModelConfig

    return ModelConfig(
        encoder=case.net,
        decoder=case.net,
        latent_dim=case.latent_dim,
        likelihood=case.likelihood,
        width=case.width,
        depth=case.depth,
        resolutions=case.resolutions,
        groups=case.groups,
    )


def worker(args: argparse.Namespace) -> dict:
    import torch

    from vaelab.config import EIGHT_BIT_LIKELIHOODS, ObjectiveConfig, TrainConfig
    from vaelab.models import build_model
    from vaelab.models.noise import step_noise
    from vaelab.runtime import batch_memory_format, memory_format_for, prepare_device, resolve_precision
    from vaelab.training.optim import build_optimizer
    from vaelab.training.step import train_step

    name, case = parse_case(args.worker)
    precision, channels_last, compiled = parse_variant(args.variant)
    device = torch.device(args.device)
    prepare_device(device, args.threads)
    torch.manual_seed(0)
    model = build_model(model_config(case), ObjectiveConfig(), case.shape)
    picked = "{}-{}".format(
        resolve_precision("auto", device, model),
        "cl" if memory_format_for(model, device) == torch.channels_last else "nchw",
    )
    model = model.to(device=device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = build_optimizer(model.parameters(), TrainConfig())
    gen = torch.Generator().manual_seed(0)
    if case.likelihood in EIGHT_BIT_LIKELIHOODS:
        x = torch.randint(0, 256, (args.batch, *case.shape), generator=gen).float() / 255
    else:
        x = torch.bernoulli(torch.rand(args.batch, *case.shape, generator=gen), generator=gen)
    x = x.to(device).contiguous(memory_format=batch_memory_format(model))
    rng = torch.Generator(device)
    count = iter(range(10**9))

    def step() -> None:  # as `training.loop` runs it: the step's own noise, so no pixel check
        with step_noise(rng, 0, next(count), slice(0, args.batch), args.batch):
            train_step(model, optimizer, x, precision=precision, direct=False)

    flops = count_flops(model, step)  # before any compilation: the model's own layers
    first_step_s = None
    if compiled:
        # hvae's forward breaks the graph at each latent group's noise draw (a torch.Generator), and the pieces
        # after the breaks run at each resolution's shapes: more than dynamo's 8 compilations of one function,
        # past which it would run the rest eagerly and without a word
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        model.compile(dynamic=False)  # in place: `model(x)` in the step runs the compiled forward
        start = time.perf_counter()
        step()  # compiles the forward and, at its backward, the backward
        sync(device)
        first_step_s = time.perf_counter() - start
    for _ in range(args.warmup):  # allocator, kernels, optimiser state
        step()
    reset_peak_memory(device)

    def block() -> None:
        for _ in range(args.steps):
            step()

    seconds = statistics.median(time_best(block, 1, device) for _ in range(args.repeats)) / args.steps
    return {
        "case": name,
        "variant": args.variant,
        "precision": precision,
        "params": sum(p.numel() for p in model.parameters()),
        "ms_per_step": seconds * 1e3,
        "images_per_s": args.batch / seconds,
        "gflop_per_step": flops / 1e9,
        "gflops": flops / seconds / 1e9,
        "peak_mb": peak_memory_mb(device),
        "first_step_s": first_step_s,
        "picked": picked,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help=CASE_FORMAT)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--compile", action="store_true", help="also time the fastest variant under torch.compile")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="optimiser steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks; the median is kept")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=1, help="run every row this many times, interleaved")
    parser.add_argument("--threads", type=int, help="CPU threads (default: vaelab's choice, once, for every row)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peak-size", type=int, default=2048, help=argparse.SUPPRESS)  # the tests' smaller peak
    parser.add_argument("--worker", metavar="CASE", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    names = [parse_case(c)[0] for c in args.cases]  # fail on a typo before anything runs
    for v in args.variants:
        parse_variant(v)
    import torch

    from vaelab.runtime import compute_dtype, prepare_device

    threads_text = prepare_device(torch.device(args.device), args.threads)
    threads = torch.get_num_threads()  # every worker gets the same count, whatever the load does meanwhile
    precisions = sorted({parse_variant(v)[0] for v in args.variants} | ({"fp32", "bf16"} if args.compile else set()))
    peaks = {}
    for p in precisions:
        peaks[p] = matmul_peak_gflops(args.device, n=args.peak_size, dtype=compute_dtype(p))
    print(
        f"device {args.device}, {threads_text}; matmul peak ({args.peak_size}^3) "
        + ", ".join(f"{p} {peaks[p]:.0f}" for p in precisions)
        + f" GFLOP/s; batch {args.batch}, median of {args.repeats} blocks of {args.steps} steps, "
        f"median of {args.rounds} round(s), each row in a fresh process"
    )

    def measure(case: str, variant: str) -> dict:
        return in_fresh_process(
            "benchmarks.blocks",
            ["--worker", case, "--variant", variant, "--threads", str(threads), "--device", args.device]
            + [f"--{k}={getattr(args, k)}" for k in ("batch", "steps", "repeats", "warmup")],
        )

    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):  # interleaved: a slow minute on a shared machine hits every row alike
        for case in args.cases:
            for variant in args.variants:
                runs.setdefault((case, variant), []).append(measure(case, variant))
    rows = {key: median_run(results) for key, results in runs.items()}
    if args.compile:
        for case in args.cases:
            fastest = max(args.variants, key=lambda v: rows[case, v]["images_per_s"])
            rows[case, fastest + COMPILED] = measure(case, fastest + COMPILED)

    print(
        f"{'case':<22}{'variant':<17}{'img/s':>8}{'ms/step':>9}{'vs fp32':>8}{'params':>10}{'GFLOP/step':>11}"
        f"{'GFLOP/s':>9}{'of peak':>8}{'peak MB':>8}"
    )
    for case, name in zip(args.cases, names):
        base = rows.get((case, VARIANTS[0]))
        for (c, variant), r in rows.items():
            if c != case:
                continue
            ratio = f"{r['images_per_s'] / base['images_per_s']:.2f}x" if base else "-"
            star = "*" if variant == r["picked"] else ""
            print(
                f"{name:<22}{variant + star:<17}{r['images_per_s']:>8.0f}{r['ms_per_step']:>9.1f}{ratio:>8}"
                f"{r['params']:>10,}{r['gflop_per_step']:>11.3f}{r['gflops']:>9.1f}"
                f"{r['gflops'] / peaks[r['precision']]:>8.0%}{r['peak_mb']:>8.0f}"
            )
    for r in rows.values():
        if r["first_step_s"] is not None:
            print(f"{r['case']} {r['variant']}: first step {r['first_step_s']:.1f} s, compilation included (not timed)")
    print("*: what `vaelab train` picks here (precision auto, its layout); vs fp32: img/s against fp32-nchw")
    return 0


def median_run(results: list[dict]) -> dict:
    """The round whose step time is the median (the lower middle one for an even count)."""
    ordered = sorted(results, key=lambda r: r["ms_per_step"])
    return ordered[(len(ordered) - 1) // 2]


if __name__ == "__main__":
    sys.exit(main())

"""Latency of the latent explorer's decode endpoint, through Starlette's test client.

    python -m benchmarks explore [--cases cvae2 mnist-hvae cifar-hvae] [--requests 50] [--warmup 5]
                                 [--temperature 1] [--threads N]

Each case is a preset whose model is built fresh (untrained: the latency does not depend on the weights)
and served by `vaelab.explore.app` over random test images, as `vaelab explore` serves a run. It times
--requests POST /api/decode calls, each with a new seeded z (and, for a hierarchy, the lower groups drawn
at --temperature), whole requests: JSON parsing and checks, the decoder pass under the model's lock, the
PNG encoding and the response. It prints the median and the 95th percentile in ms against the target:
50 ms for the seed presets (one latent), 250 ms for the hierarchical ones.
Timings mean nothing while other processes use the cores: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

DEFAULT_CASES = ["cvae2", "mnist-hvae", "cifar-hvae"]
TARGET_MS = {"seed": 50.0, "strong": 250.0}


def time_decodes(preset: str, *, requests: int, warmup: int, temperature: float, images: int = 64) -> dict:
    """ms per decode request for a fresh model of `preset`: every request's time, and the model's shape."""
    import torch

    from vaelab.explore.app import create_app
    from vaelab.explore.state import untrained_explorer

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with")  # Starlette 1.x would rather have httpx2
        from starlette.testclient import TestClient

    explorer = untrained_explorer(preset, images=images)
    d = explorer.model.latent_dim
    groups = len(explorer.model.group_shapes)
    g = torch.Generator().manual_seed(0)
    times = []
    with TestClient(create_app(explorer)) as client:
        for i in range(warmup + requests):
            z = (torch.randn(d, generator=g) * 1.5).clamp(-4, 4).tolist()
            body = {"z": z, "temperature": temperature if groups > 1 else 0.0, "seed": i}
            start = time.perf_counter()
            r = client.post("/api/decode", json=body)
            elapsed = (time.perf_counter() - start) * 1000
            if r.status_code != 200:
                raise RuntimeError(f"{preset}: decode answered {r.status_code}: {r.text}")
            if i >= warmup:
                times.append(elapsed)
    return {"latent_dim": d, "groups": groups, "image": "x".join(map(str, explorer.model.image_shape)), "ms": times}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="presets (vaelab presets)")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests first")
    parser.add_argument("--temperature", type=float, default=1.0, help="a hierarchy's lower groups (default 1)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: vaelab's choice)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0:
        parser.error("--requests must be at least 1 and --warmup at least 0")

    import torch

    from vaelab.presets import PRESETS
    from vaelab.runtime import prepare_device

    unknown = [c for c in args.cases if c not in PRESETS]
    if unknown:
        parser.error(f"unknown preset {unknown[0]!r} (known: {', '.join(PRESETS)})")
    threads_text = prepare_device(torch.device("cpu"), args.threads)
    print(f"cpu, {threads_text}; POST /api/decode through the test client, {args.requests} requests per case")
    print(f"{'case':<14}{'latent':>8}{'groups':>8}{'image':>9}{'median ms':>11}{'p95 ms':>9}{'target':>8}  ok")
    for case in args.cases:
        r = time_decodes(case, requests=args.requests, warmup=args.warmup, temperature=args.temperature)
        target = TARGET_MS["strong" if r["groups"] > 1 else "seed"]
        median, p95 = statistics.median(r["ms"]), percentile(r["ms"], 95)
        ok = "yes" if p95 < target else "NO"
        print(
            f"{case:<14}{r['latent_dim']:>8}{r['groups']:>8}{r['image']:>9}{median:>11.1f}{p95:>9.1f}"
            f"{target:>8.0f}  {ok}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

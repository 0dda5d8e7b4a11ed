"""The disentanglement comparison of docs/results.md: β-VAE (β = 1 and 4), β-TCVAE (β = 6) and FactorVAE
(γ = 35) on `shapes`, the same network, data and epochs for every row, several seeds each.

    python -m benchmarks.disentanglement [--runs DIR] [--seeds 0,1,2] [--rows beta-vae-1,...]
                                         [--epochs N] [--disentanglement-n N] [--dci-predictor NAME]
                                         [--train-args "..."]

Trains each (row, seed) with `vaelab train --preset shapes-vae ROW'S FLAGS --seed S --out DIR/ROW-sS`, one
run at a time and seed by seed (every row at the first seed, then the next seed), so that an interrupted job
has every row at its first seeds; a finished run is kept, an interrupted one resumes with `--resume`. It
evaluates each run once with
`vaelab evaluate RUN --disentanglement --iwae-k 0 --no-frechet` (the test ELBO on shapes' 2,000 test images,
and the three metrics on new images of the grid), and prints one table: each measure's mean ± spread over
the seeds (the sample standard deviation; the minimum and maximum are in the JSON), with the training
minutes. Writes DIR/table.md and DIR/table.json. A long job: run it alone on the machine, in the
background, and run it again to continue after an interruption. `--train-args` adds flags to every
training (for a quick check: "--limit 512 --image-size 32").
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import tomllib
from pathlib import Path

from vaelab.files import write_text

ROWS = {
    "beta-vae-1": ("β-VAE, β = 1", []),
    "beta-vae-4": ("β-VAE, β = 4", ["--beta", "4"]),
    "btcvae-6": ("β-TCVAE, β = 6", ["--objective", "btcvae", "--tc-weight", "6"]),
    "factorvae-35": ("FactorVAE, γ = 35", ["--objective", "factorvae", "--tc-weight", "35"]),
}
MEASURES = (  # (eval.json key, column heading)
    ("mig", "MIG"),
    ("factorvae_score", "FactorVAE score"),
    ("dci_disentanglement", "DCI disent."),
    ("dci_completeness", "DCI compl."),
    ("dci_informativeness", "DCI inform."),
    ("elbo", "test ELBO (nats)"),
)


def _vaelab(*args: str) -> list[str]:
    return [sys.executable, "-m", "vaelab", *args]


def _finished(run: Path) -> bool:
    """Whether the run trained all its epochs (its last metrics line is the config's last epoch)."""
    try:
        epochs = tomllib.loads((run / "config.toml").read_text())["train"]["epochs"]
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except (OSError, ValueError, KeyError):
        return False
    return bool(lines) and json.loads(lines[-1])["epoch"] >= epochs


def train(run: Path, flags: list[str], seed: int, args: argparse.Namespace) -> None:
    if _finished(run):
        return
    if (run / "checkpoint.safetensors").exists():
        cmd = _vaelab("train", "--resume", str(run), "--no-progress")
    else:
        cmd = _vaelab("train", "--preset", "shapes-vae", *flags, "--seed", str(seed), "--out", str(run))
        cmd += ["--checkpoint-every", "1000", "--no-progress", *shlex.split(args.train_args)]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
    print("  $", shlex.join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def evaluate(run: Path, args: argparse.Namespace) -> dict:
    saved = run / "disentanglement-eval.json"
    if saved.exists():
        return json.loads(saved.read_text())
    cmd = _vaelab("evaluate", str(run), "--disentanglement", "--iwae-k", "0", "--no-frechet", "--json")
    cmd += ["--no-progress", "--disentanglement-n", str(args.disentanglement_n), "--dci-predictor", args.dci_predictor]
    print("  $", shlex.join(cmd[2:]), flush=True)
    result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    write_text(saved, json.dumps(result, indent=1))
    return result


def minutes(run: Path) -> float:
    return sum(json.loads(line)["seconds"] for line in (run / "metrics.jsonl").read_text().splitlines()) / 60


def summary(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else math.nan,
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=Path("runs/disentanglement"), help="where the runs go")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    p.add_argument("--epochs", type=int, help="the epochs of every run (default: the preset's)")
    p.add_argument("--disentanglement-n", type=int, default=10_000, help="the metrics' N (default 10,000)")
    p.add_argument("--dci-predictor", default="random-forest", choices=["random-forest", "gbt", "logistic"])
    p.add_argument("--train-args", default="", help="more flags for every `vaelab train` (quoted)")
    args = p.parse_args(argv)
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        p.error(f"unknown row {unknown[0]!r} (known: {', '.join(ROWS)})")
    seeds = [int(s) for s in args.seeds.split(",")]

    results = {}  # seed by seed, so that an interrupted job has every row at its first seeds
    for seed in seeds:
        for row in rows:
            label, flags = ROWS[row]
            run = args.runs / f"{row}-s{seed}"
            print(f"{label}, seed {seed}: {run}", flush=True)
            train(run, flags, seed, args)
            results[row, seed] = (evaluate(run, args), minutes(run))
    table = {}
    for row in rows:
        label, flags = ROWS[row]
        evals = [results[row, seed][0] for seed in seeds]
        table[row] = {
            "label": label,
            "flags": flags,
            "seeds": seeds,
            "minutes": summary([results[row, seed][1] for seed in seeds]),
            **{key: summary([r[key] for r in evals]) for key, _ in MEASURES},
        }

    head = "| model | " + " | ".join(h for _, h in MEASURES) + " | training (min) |"
    lines = [head, "|" + " --- |" * (len(MEASURES) + 2)]
    for row in table.values():
        cells = [f"{row[k]['mean']:.3f} ± {row[k]['sd']:.3f}" for k, _ in MEASURES[:-1]]
        cells.append(f"{row['elbo']['mean']:.1f} ± {row['elbo']['sd']:.1f}")
        cells.append(f"{row['minutes']['mean']:.1f}")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    first = next(iter(table.values()))
    setting = (
        f"shapes-vae on shapes, seeds {','.join(map(str, seeds))}: mean ± sample sd over the seeds; metrics on "
        f"N = {args.disentanglement_n:,} new grid images, DCI with a {args.dci_predictor}; "
        f"{len(first['seeds'])} runs per row"
    )
    print("\n" + setting + "\n" + text)
    args.runs.mkdir(parents=True, exist_ok=True)
    write_text(args.runs / "table.md", setting + "\n\n" + text + "\n")
    write_text(args.runs / "table.json", json.dumps({"setting": setting, "rows": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`vaelab evaluate`: ELBO, IWAE NLL, bits/dim, reconstruction MSE, active units and a Fréchet distance.

Prints a few aligned lines (or, with --json, one JSON object) and always
writes the same object to RUN/eval.json (atomically), which the HTML report reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..api import evaluate, save_evaluation
from ..evaluation.disentanglement.measure import DEFAULT_N as DISENTANGLEMENT_N
from ..evaluation.disentanglement.metrics import DCI_PREDICTORS
from .args import add_data_dir, add_expost, add_weights, non_negative_int, positive_int, seed


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test ELBO, IWAE NLL, bits/dim, MSE, active units, Fréchet distance of a run",
        description="Measure a trained run on a split; also writes RUN/eval.json.",
    )
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--limit", type=positive_int, help="evaluate on the first N images of the split")
    p.add_argument("--seed", type=seed, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--batch-size", type=positive_int, help="images encoded at once (default: the run's eval batch)")
    p.add_argument(
        "--iwae-k",
        type=non_negative_int,
        default=100,
        metavar="K",
        help="importance samples per image for the IWAE NLL (default 100; 0 skips it; cost is linear in K)",
    )
    p.add_argument(
        "--chunk",
        type=positive_int,
        metavar="N",
        help="at most N (image, sample) pairs decoded at once: bounds memory, not the numbers "
        "(default 256 on CPU, 4096 on CUDA)",
    )
    p.add_argument("--no-frechet", action="store_true", help="skip the Fréchet distance (and its classifier)")
    p.add_argument(
        "--frechet-n",
        type=positive_int,
        default=5000,
        metavar="N",
        help="samples and test images compared by the Fréchet distance (default 5000, at most the split)",
    )
    p.add_argument(
        "--disentanglement",
        action="store_true",
        help="also MIG, the FactorVAE score and DCI of the posterior means (a dataset with factors: shapes)",
    )
    p.add_argument(
        "--disentanglement-n",
        type=positive_int,
        default=DISENTANGLEMENT_N,
        metavar="N",
        help="codes for MIG and to train DCI's predictors, FactorVAE training votes; half as many test them "
        "(default 10000, as disentanglement_lib)",
    )
    p.add_argument(
        "--dci-predictor",
        choices=DCI_PREDICTORS,
        default="random-forest",
        help="DCI's classifier per factor: random-forest (default), gbt (disentanglement_lib's, minutes), logistic",
    )
    add_expost(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines on standard error")
    add_data_dir(p)
    add_weights(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = evaluate(
        args.run,
        split=args.split,
        limit=args.limit,
        seed=args.seed,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        device=args.device,
        iwae_k=args.iwae_k,
        chunk=args.chunk,
        frechet=not args.no_frechet,
        frechet_n=args.frechet_n,
        write=False,
        log=lambda line: print(line, file=sys.stderr),
        progress=not args.no_progress,
        weights=args.weights,
        disentanglement=args.disentanglement,
        disentanglement_n=args.disentanglement_n,
        dci_predictor=args.dci_predictor,
        expost_levels=args.expost_levels,
        expost_n=args.expost_n,
    )
    print(json.dumps(result) if args.json else format_text(result), flush=True)  # the numbers first: a failed
    save_evaluation(args.run, result)  # save loses nothing computed
    return 0


def format_text(r: dict[str, Any]) -> str:
    """A few aligned lines, each with what the number is: a mean over the images as `mean ± se` (its standard
    error; absent from an older evaluation or for one image), the means and the ± in aligned columns."""
    classes = f", classes {','.join(map(str, r['classes']))}" if r.get("classes") else ""
    recon, kl = _pm_of(r, "recon", ".2f"), _pm_of(r, "kl", ".2f")
    rows = [
        ("ELBO", f"{r['elbo']:.2f}", _spread(r, "elbo", ".2f", "nats"), f"recon {recon} + KL {kl}; one z per image")
    ]
    if r["nll_iwae"] is not None:
        nll = _spread(r, "nll_iwae", ".2f", "nats")
        rows.append(
            (
                f"NLL (IWAE, k={r['k']})",
                f"{r['nll_iwae']:.2f}",
                nll,
                f"{_pm_of(r, 'iwae_gap', '.2f')} tighter than -ELBO",
            )
        )
    else:
        rows.append(("NLL (IWAE)", "-", "", "skipped (--iwae-k 0)"))
    if r["bits_per_dim"] is not None:
        source = "the IWAE NLL" if r["bits_per_dim_from"] == "iwae" else "-ELBO"
        rows.append(("bits/dim", f"{r['bits_per_dim']:.4f}", _spread(r, "bits_per_dim", ".4f"), f"from {source}"))
    else:
        rows.append(("bits/dim", "-", "", f"not defined: {r['bits_per_dim_note']}"))
    mse = _spread(r, "recon_mse", ".5f")
    rows.append(("recon MSE", f"{r['recon_mse']:.5f}", mse, "per image, z = mu, pixels in [0, 1]"))
    kl = " ".join(f"{v:.2f}" for v in r["kl_per_dim"][:16]) + (" ..." if r["latent_dim"] > 16 else "")
    rows.append(("active units", f"{r['active_units']} of {r['latent_dim']}", "", f"KL per dim: {kl}"))
    if r.get("kl_per_group"):
        ses = r.get("kl_per_group_se") or [None] * len(r["kl_per_group"])
        groups = ", ".join(_pm(v, se, ".2f") for v, se in zip(r["kl_per_group"], ses))
        active = " ".join(f"{a}/{d}" for a, d in zip(r["active_units_per_group"], r["group_dims"]))
        rows.append(("KL per group", f"{min(r['kl_per_group']):.2f}", "least", f"nats, top first: {groups}"))
        rows.append(("active per group", "", "", f"active units / dims of each group, top first: {active}"))
    if r["frechet_distance"] is not None:
        rows.append(
            (
                "Fréchet distance",
                f"{r['frechet_distance']:.3f}",
                "",
                f"{r['frechet_n']} samples vs {r['frechet_n']} {r['split']} images, features of "
                f"{r['frechet_classifier']} ({100 * r['frechet_classifier_accuracy']:.1f}% test accuracy)",
            )
        )
    else:
        rows.append(("Fréchet distance", "-", "", r["frechet_note"]))
    if r.get("frechet_distance_expost") is not None:
        rows.append(
            (
                "FD, ex-post top",
                f"{r['frechet_distance_expost']:.3f}",
                "",
                f"the same, the top {r['expost_groups']} groups ({r['expost_levels']} levels) from a Gaussian "
                f"fitted to {r['expost_n']:,} training images' posterior means",
            )
        )
    if r.get("mig") is not None:
        rows += _disentanglement_rows(r)
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{r['dataset']} {r['split']}{classes}: {r['n']} images, seed {r['seed']}"]
    lines += [
        f"  {name:<{widths[0]}}  {value:>{widths[1]}} {rest:<{widths[2]}}   {note}" for name, value, rest, note in rows
    ]
    if r.get("disentanglement_settings"):
        lines.append(f"  disentanglement settings: {r['disentanglement_settings']}")
    return "\n".join(lines)


def _disentanglement_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    names = r["disentanglement_factors"]
    mig = ", ".join(f"{f} {v:.2f} (z{d})" for f, v, d in zip(names, r["mig_per_factor"], r["mig_best_dim"]))
    test = ", ".join(f"{f} {v:.2f}" for f, v in zip(names, r["dci_informativeness_per_factor"]))
    return [
        ("MIG", f"{r['mig']:.3f}", "", f"per factor (its best dim): {mig}"),
        (
            "FactorVAE score",
            f"{r['factorvae_score']:.3f}",
            "",
            f"held-out vote accuracy (chance {r['factorvae_chance']:.2f}), {r['factorvae_dims']} dims voting",
        ),
        ("DCI disentanglement", f"{r['dci_disentanglement']:.3f}", "", f"completeness {r['dci_completeness']:.3f}"),
        ("DCI informativeness", f"{r['dci_informativeness']:.3f}", "", f"{r['dci_predictor']} test accuracy: {test}"),
    ]


def _spread(r: dict[str, Any], key: str, spec: str, unit: str = "") -> str:
    """What follows a mean in the table: '± 0.41 nats' (the standard error, as precise as the mean), or just the
    unit where there is none."""
    se = r.get(f"{key}_se")
    return " ".join(part for part in ("" if se is None else f"± {se:{spec}}", unit) if part)


def _pm_of(r: dict[str, Any], key: str, spec: str) -> str:
    """A mean and its standard error in one: '150.75 ± 0.38', or the mean alone where there is none."""
    return _pm(r[key], r.get(f"{key}_se"), spec)


def _pm(value: float, se: float | None, spec: str) -> str:
    return f"{value:{spec}}" if se is None else f"{value:{spec}} ± {se:{spec}}"

"""`vaelab compare`: runs side by side, their saved evaluations in one table and their training curves in one
picture (DIR/compare.png). Nothing is evaluated: a run without RUN/eval.json says how to make one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..report.compare import RunFacts, compare_figure, differing_settings, load_runs
from ..viz.time_chart import duration
from .evaluate import _pm

FIGURE = "compare.png"
# (row name, key of the evaluation, format): a mean shows '± its standard error' where `<key>_se` is saved
NUMBERS = (
    ("ELBO", "elbo", ".2f"),
    ("recon", "recon", ".2f"),
    ("KL", "kl", ".2f"),
    ("NLL (IWAE)", "nll_iwae", ".2f"),
    ("IWAE gap", "iwae_gap", ".2f"),
    ("bits/dim", "bits_per_dim", ".4f"),
    ("recon MSE", "recon_mse", ".5f"),
    ("Fréchet distance", "frechet_distance", ".3f"),
)


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="runs side by side: their saved evaluations in one table, their training curves in one picture",
        description="Show the runs' saved evaluations (RUN/eval.json, from vaelab evaluate) in one table, a "
        "column per run, and draw their -ELBO against training time in DIR/compare.png.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or checkpoint files)")
    p.add_argument("-o", "--out", metavar="DIR", default=".", help="where compare.png goes (default: here)")
    p.add_argument("--any-data", action="store_true", help="compare runs trained on different datasets or sizes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    facts = load_runs(args.runs, any_data=args.any_data)  # every refusal comes before anything is written
    for f in facts:
        if f.eval_problem:
            print(f"vaelab: warning: {f.eval_problem}", file=sys.stderr)
    figure = compare_figure(facts)
    written = None
    if figure is None:
        print("vaelab: no run has a finished epoch in metrics.jsonl: no picture drawn", file=sys.stderr)
    else:
        from ..viz.figures import save_figure

        written = save_figure(figure, Path(args.out) / FIGURE)
    if args.json:
        out = {
            "runs": [f.as_json() for f in facts],
            "different_settings": differing_settings(facts),
            "figure": None if written is None else str(written),
        }
        print(json.dumps(out))
    else:
        print(format_table(facts))
        if written is not None:
            print(f"wrote {written}")
    return 0


def format_table(facts: list[RunFacts]) -> str:
    """A column per run, a row per fact or number; a last line when the evaluations' settings differ."""
    rows: list[tuple[str, list[str]]] = [
        ("preset", [f.config.preset for f in facts]),
        ("data", [f"{f.config.data.name} {'x'.join(map(str, f.image_shape))}" for f in facts]),
        ("parameters", ["?" if f.parameters is None else f"{f.parameters:,}" for f in facts]),
        ("epochs", [str(f.epochs) for f in facts]),
        ("training", [duration(f.training_minutes) for f in facts]),
        ("evaluated on", [_settings(f) for f in facts]),
    ]
    rows += [(name, [_number(f.evaluation, key, spec) for f in facts]) for name, key, spec in NUMBERS]
    rows.append(("active units", [_active(f.evaluation) for f in facts]))
    if any(f.evaluation and f.evaluation.get("kl_per_group") for f in facts):
        rows.append(("KL per group", [_groups(f.evaluation) for f in facts]))
    names = [f.label for f in facts]
    first = max(len(name) for name, _ in rows)
    widths = [max(len(names[i]), *(len(cells[i]) for _, cells in rows)) for i in range(len(facts))]
    lines = [" " * first + "".join(f"  {name:<{w}}" for name, w in zip(names, widths))]
    lines += [f"{name:<{first}}" + "".join(f"  {c:<{w}}" for c, w in zip(cells, widths)) for name, cells in rows]
    lines = [line.rstrip() for line in lines]
    differ = differing_settings(facts)
    if differ:
        said = "; ".join(f"{key} {', '.join(map(str, values))}" for key, values in differ.items())
        lines.append(f"note: evaluated with different settings ({said}): these numbers are not comparable")
    return "\n".join(lines)


def _settings(f: RunFacts) -> str:
    e = f.evaluation
    if e is None:
        return "eval.json unusable" if f.eval_problem else f"not evaluated (vaelab evaluate {f.path})"
    return f"{e['split']}, {e['n']} images, seed {e.get('seed', '?')}, k {e.get('k') or 0}"


def _number(e: dict[str, Any] | None, key: str, spec: str) -> str:
    if e is None or e.get(key) is None:
        return "-"
    return _pm(e[key], e.get(f"{key}_se"), spec)


def _active(e: dict[str, Any] | None) -> str:
    if e is None or e.get("active_units") is None:
        return "-"
    return f"{e['active_units']} of {e.get('latent_dim', '?')}"


def _groups(e: dict[str, Any] | None) -> str:
    """The groups' KLs, top first, without their standard errors (--json has them): a column stays readable."""
    if e is None or not e.get("kl_per_group"):
        return "-"
    return " ".join(f"{v:.2f}" for v in e["kl_per_group"])

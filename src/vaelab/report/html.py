"""`RUN/report.html`: model, evaluation, metrics, every picture and the config, in one file with images embedded.

The page is built from what the run directory holds (checkpoint, config.toml,
metrics.jsonl, evals/ and eval.json, plots/, samples/), so it can be sent to a
colleague as it is: no links to local files, no scripts, no network.

Every evaluation is kept with its settings (RUN/evals/, see
`training.runfiles.read_evals`). The page shows one, says which and why (the
largest K among those on the most test images), and lists the others.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..errors import VaelabError
from ..files import write_text
from ..models import build_model, count_parameters
from ..presets import PRESETS
from ..training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from ..training.rundir import RunDir
from ..training.runfiles import describe_dropped, read_config_text, read_evals
from ..training.trainer import config_diff
from ..version import __version__
from .evaluation import choose_evaluation, evaluation_section, number

# (file in RUN/plots, title, caption) in the order the page shows them.
PICTURES = [
    (
        "loss.png",
        "Loss curves",
        (
            "Training −ELBO per logged window of steps (when the run logged them) and per epoch, validation −ELBO "
            "after each epoch, in nats per image. The y range fits the bulk of the values: a point far off it (an "
            "absurd first epoch) is drawn at the edge as a triangle, its value beside it."
        ),
    ),
    (
        "time.png",
        "Likelihood against training time",
        (
            "Validation −ELBO after each epoch (training −ELBO lighter) against the training time summed over the "
            "epochs, validation not counted; in bits/dim where the likelihood is a probability of the pixels' "
            "values, else in nats per image."
        ),
    ),
    (
        "samples.png",
        "Samples",
        "Images decoded from the prior, shown as the likelihood's mean: the same as `vaelab sample --seed S` draws.",
    ),
    ("progress.gif", "Samples over training", "The same latent noise decoded after every epoch."),
    ("reconstructions.png", "Reconstructions", "Test originals, reconstructions via z = μ, and via a sampled z."),
    (
        "latent.png",
        "Latent space",
        "Posterior means of test images, coloured by label; for a run trained on some classes, the others faded.",
    ),
    ("manifold.png", "Latent manifold", "Decoded grid over two latent dimensions, the others held at 0."),
    ("interpolation.png", "Interpolations", "Between pairs of test images in latent space, linear and spherical."),
    ("traversals.png", "Latent traversals", "Each latent dimension swept while the others stay fixed."),
    (
        "levels.png",
        "Levels of the hierarchy",
        "Test images' top latent groups kept down to each resolution, the groups below drawn from their priors.",
    ),
    (
        "error_hist.png",
        "Reconstruction error",
        (
            "Histogram of per-image test reconstruction MSE; for a run trained on some classes, theirs against the "
            "others'."
        ),
    ),
]

METRIC_COLUMNS = [
    ("epoch", "epoch", "{}"),
    ("train −ELBO", "train_elbo", "neg"),
    ("val ELBO", "val_elbo", "num"),
    ("val recon", "val_recon", "num"),
    ("val KL", "val_kl", "num"),
    ("seconds", "seconds", "{:.1f}"),
    ("img/s", "images_per_s", "{:.0f}"),
]

# The keys of an evaluation that the table's rows and its settings line show; any other is listed as it is.
STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.1em; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td.k, th.k { text-align: left; } td.m { text-align: left; color: #555; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.9em; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 0.95em; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
.missing { color: #a00; } .note { color: #555; }
"""


def write_report(run: str | Path, log: Callable[[str], None] = print) -> Path:
    """Write RUN/report.html from the run's files; returns its path.

    Damaged run files do not stop the report: their good part is shown and
    `log` says what was left out (a metrics line, an evaluation that cannot be
    read, a config.toml that is not the run's).
    """
    rd = RunDir(Path(run))
    if not (rd.path / CHECKPOINT_NAME).exists():
        raise VaelabError(f"{rd.path} is not a vaelab run: it has no {CHECKPOINT_NAME}")
    config_text, config_problem = read_config_text(rd.config_path) if rd.config_path.exists() else ("", None)
    metrics, problems = rd.read_metrics_checked()
    evaluations, eval_problems = read_evals(rd.path)
    model = _model_facts(rd.path)
    if problems:
        log(f"report: {describe_dropped(rd.metrics_path, problems)}")
    for problem in (config_problem, *eval_problems):
        if problem:
            log(f"report: {problem}")
    chosen, why = choose_evaluation(evaluations)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>vaelab report: {html.escape(rd.path.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(rd.path.name)}</h1>",
        f'<p class="sub">vaelab run report, written {datetime.now().strftime("%Y-%m-%d %H:%M")}</p>',
        _summary(metrics, chosen[1] if chosen else None),
        _model_table(model),
        evaluation_section(chosen, why, evaluations),
        _metrics_table(metrics),
        _pictures(rd.path),
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(config_text)}</pre>",
        "</body></html>",
    ]
    return write_text(rd.path / "report.html", "\n".join(p for p in parts if p))


# --------------------------------------------------------------------------- sections


def _summary(metrics: list[dict], evaluation: dict | None) -> str:
    if not metrics:
        return "<p>No finished epoch yet.</p>"
    last = metrics[-1]
    seconds = sum(r["seconds"] for r in metrics)
    line = (
        f"{len(metrics)} epochs, {last['step']:,} steps, {seconds:.0f} s of training. "
        f"Final {html.escape(last['val_split'])} ELBO <b>{number(last['val_elbo'])}</b> nats per image."
    )
    if evaluation and evaluation.get("elbo") is not None:
        line += (
            f" {html.escape(evaluation['split']).capitalize()} ELBO <b>{number(evaluation['elbo'])}</b> "
            f"on {evaluation['n']} images."
        )
    return f"<p>{line}</p>"


def _model_facts(run: Path) -> dict[str, Any]:
    """What the page says of the model and the software: from the checkpoint (its config, image shape and the
    vaelab that wrote it), with its parameters counted on a freshly built copy."""
    try:
        ckpt = load_checkpoint(run, with_optimizer=False)
    except VaelabError as e:
        return {"problem": str(e)}
    cfg = ckpt.config
    facts: dict[str, Any] = {"config": cfg, "image_shape": ckpt.image_shape, "written_by": ckpt.version}
    try:
        model = build_model(cfg.model, cfg.objective, ckpt.image_shape)
        facts["parameters"] = count_parameters(model)
        facts["group_shapes"] = model.group_shapes
    except VaelabError as e:  # a part registered by code that is not imported here
        facts["parameters_problem"] = str(e)
    return facts


def _model_table(facts: dict[str, Any]) -> str:
    if "problem" in facts:
        return f'<h2>Model</h2><p class="missing">{html.escape(facts["problem"])}</p>'
    cfg = facts["config"]
    m = cfg.model
    preset = PRESETS.find(cfg.preset)
    rows: list[tuple[str, str]] = []

    def add(name: str, value: str) -> None:
        rows.append((name, value))

    if preset is not None:
        add("preset", f"<b>{html.escape(preset.name)}</b>: {html.escape(preset.description)}")
        changed = config_diff(preset.config, cfg)
        if changed:
            add(
                "changed from the preset",
                ", ".join(
                    f"{section}.{key} = {html.escape(repr(new))}"
                    for (section, key), (_, new) in sorted(changed.items())
                ),
            )
    else:
        add("model", f"<b>{html.escape(cfg.preset)}</b> (not a preset of this vaelab)")
    add(
        "parts",
        html.escape(
            f"encoder {m.encoder}, decoder {m.decoder}, {m.posterior} posterior, {m.prior} prior, "
            f"{m.likelihood} likelihood"
        ),
    )
    add(
        "trainable parameters",
        f"{facts['parameters']:,}" if "parameters" in facts else f"unknown: {html.escape(facts['parameters_problem'])}",
    )
    shapes = facts.get("group_shapes", ((m.latent_dim,),))
    if len(shapes) == 1:
        add("latent", f"{math.prod(shapes[0])} dims")
    else:
        layout = ", ".join("×".join(map(str, shape)) for shape in shapes)
        add("latent", f"{len(shapes)} groups, top first: {layout} ({sum(math.prod(s) for s in shapes):,} dims)")
    classes = f", classes {', '.join(map(str, cfg.data.classes))} only" if cfg.data.classes else ""
    add("images", f"{html.escape(cfg.data.name)}, {'×'.join(map(str, facts['image_shape']))} (C×H×W){classes}")
    add(
        "training",
        f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}, {cfg.train.optimizer} lr "
        f"{cfg.train.lr:g}, seed {cfg.train.seed}, device setting {html.escape(cfg.train.device)}",
    )
    add(
        "software",
        f"checkpoint written by vaelab {html.escape(facts['written_by'])}; this page by vaelab "
        f"{__version__} with torch {html.escape(torch.__version__)}",
    )
    body = "".join(f'<tr><td class="k">{name}</td><td class="m">{value}</td></tr>' for name, value in rows)
    return f"<h2>Model</h2><table>{body}</table>"


def _metrics_table(metrics: list[dict]) -> str:
    if not metrics:
        return ""
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _, _ in METRIC_COLUMNS)
    body = []
    for r in metrics:
        cells = []
        for _, key, fmt in METRIC_COLUMNS:
            value = r.get(key)
            text = (
                "—"
                if value is None
                else number(-value)
                if fmt == "neg"
                else number(value)
                if fmt == "num"
                else fmt.format(value)
            )
            cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<h2>Training, per epoch</h2><table><tr>{head}</tr>{''.join(body)}</table>"


def _pictures(run: Path) -> str:
    out = ["<h2>Pictures</h2>"]
    found = 0
    for name, title, caption in PICTURES:
        path = run / "plots" / name
        if not path.exists():
            continue
        found += 1
        mime = "image/gif" if name.endswith(".gif") else "image/png"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        out.append(
            f'<figure><h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" '
            f'src="data:{mime};base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        )
    if not found:
        out.append('<p class="missing">No pictures yet: run <code>vaelab plot RUN</code>.</p>')
    return "\n".join(out)


# --------------------------------------------------------------------------- numbers

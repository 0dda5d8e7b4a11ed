"""`RUN/report.html`: config, metrics, evaluation and every picture, in one file with images embedded.

The page is built from what the run directory holds (config.toml,
metrics.jsonl, eval.json, plots/, samples/), so it can be sent to a
colleague as it is: no links to local files, no scripts, no network.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..errors import VaelabError
from ..files import write_text
from ..training.checkpoint import CHECKPOINT_NAME
from ..training.rundir import RunDir
from ..training.runfiles import describe_dropped, read_config_text, read_eval

# (file in RUN/plots, title, caption) in the order the page shows them.
PICTURES = [
    ("loss.png", "Loss curves", "Training and validation −ELBO per epoch, in nats per image."),
    ("samples.png", "Samples", "Images decoded from the prior, shown as the likelihood's mean."),
    ("progress.gif", "Samples over training", "The same latent noise decoded after every epoch."),
    ("reconstructions.png", "Reconstructions", "Test originals, reconstructions via z = μ, and via a sampled z."),
    ("latent.png", "Latent space", "Posterior means of test images, coloured by label."),
    ("manifold.png", "Latent manifold", "Decoded grid over two latent dimensions, the others held at 0."),
    ("interpolation.png", "Interpolations", "Between pairs of test images in latent space, linear and spherical."),
    ("traversals.png", "Latent traversals", "Each latent dimension swept while the others stay fixed."),
    ("error_hist.png", "Reconstruction error", "Histogram of per-image test reconstruction MSE."),
]

METRIC_COLUMNS = [("epoch", "epoch", "{}"), ("train −ELBO", "train_elbo", "neg"), ("val ELBO", "val_elbo", "{:.2f}"),
                  ("val recon", "val_recon", "{:.2f}"), ("val KL", "val_kl", "{:.2f}"),
                  ("seconds", "seconds", "{:.1f}"), ("img/s", "images_per_s", "{:.0f}")]

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.1em; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: right; }
th { background: #f4f4f4; } td.k, th.k { text-align: left; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.9em; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 0.95em; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
.missing { color: #a00; }
"""


def write_report(run: str | Path, log: Callable[[str], None] = print) -> Path:
    """Write RUN/report.html from the run's files; returns its path.

    Damaged run files do not stop the report: their good part is shown and
    `log` says what was left out (a metrics line, an eval.json that cannot be
    read, a config.toml that is not the run's).
    """
    rd = RunDir(Path(run))
    if not (rd.path / CHECKPOINT_NAME).exists():
        raise VaelabError(f"{rd.path} is not a vaelab run: it has no {CHECKPOINT_NAME}")
    config_text, config_problem = read_config_text(rd.config_path) if rd.config_path.exists() else ("", None)
    metrics, problems = rd.read_metrics_checked()
    evaluation, eval_problem = read_eval(rd.path / "eval.json")
    if problems:
        log(f"report: {describe_dropped(rd.metrics_path, problems)}")
    for problem in (config_problem, eval_problem):
        if problem:
            log(f"report: {problem}")
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>vaelab report: {html.escape(rd.path.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(rd.path.name)}</h1>",
        f'<p class="sub">vaelab run report, written {datetime.now().strftime("%Y-%m-%d %H:%M")}</p>',
        _summary(metrics, evaluation),
        _evaluation_table(evaluation),
        _metrics_table(metrics),
        _pictures(rd.path),
        "<h2>Configuration</h2>", f"<pre>{html.escape(config_text)}</pre>",
        "</body></html>",
    ]
    return write_text(rd.path / "report.html", "\n".join(p for p in parts if p))


def _summary(metrics: list[dict], evaluation: dict | None) -> str:
    if not metrics:
        return "<p>No finished epoch yet.</p>"
    last = metrics[-1]
    seconds = sum(r["seconds"] for r in metrics)
    line = (f"{len(metrics)} epochs, {last['step']:,} steps, {seconds:.0f} s of training. "
            f"Final {html.escape(last['val_split'])} ELBO <b>{last['val_elbo']:.2f}</b> nats per image.")
    if evaluation and evaluation.get("elbo") is not None:
        line += f" Test ELBO <b>{evaluation['elbo']:.2f}</b> on {evaluation.get('n', '?')} images."
    return f"<p>{line}</p>"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:.2f}"
    if isinstance(value, list):
        return ", ".join(_format(v) for v in value)
    return "—" if value is None else html.escape(str(value))


def _evaluation_table(evaluation: dict | None) -> str:
    if not evaluation:
        return "<h2>Evaluation</h2><p>No <code>eval.json</code> yet: run <code>vaelab evaluate RUN</code>.</p>"
    rows = "".join(f'<tr><td class="k">{html.escape(k)}</td><td>{_format(v)}</td></tr>' for k, v in evaluation.items())
    return f'<h2>Evaluation</h2><table><tr><th class="k">measure</th><th>value</th></tr>{rows}</table>'


def _metrics_table(metrics: list[dict]) -> str:
    if not metrics:
        return ""
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _, _ in METRIC_COLUMNS)
    body = []
    for r in metrics:
        cells = []
        for _, key, fmt in METRIC_COLUMNS:
            value = r.get(key)
            text = "—" if value is None else f"{-value:.2f}" if fmt == "neg" else fmt.format(value)
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
        out.append(f'<figure><h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" '
                   f'src="data:{mime};base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')
    if not found:
        out.append('<p class="missing">No pictures yet: run <code>vaelab plot RUN</code>.</p>')
    return "\n".join(out)

"""The report's evaluation section: which saved evaluation the page shows and why, its numbers with readable
names, units and meanings, and the other evaluations in brief."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from ..evaluation.disentanglement.measure import KEYS as DISENTANGLEMENT_KEYS
from ..training.runfiles import EVAL_FIELDS, saved_at
from ..viz.context import dim_factors

SHOWN = set(EVAL_FIELDS) | set(DISENTANGLEMENT_KEYS)  # what this version saves; any other key: another version


def choose_evaluation(evaluations: list[tuple[Path, dict]]) -> tuple[tuple[Path, dict] | None, str]:
    """The evaluation the page shows, and why: on the test split (else any), among those on the most images,
    the one with the largest K, then one with a Fréchet distance, then the newest."""
    if not evaluations:
        return None, ""
    if len(evaluations) == 1:
        return evaluations[0], "the only evaluation saved"
    pool = [e for e in evaluations if e[1]["split"] == "test"] or evaluations
    most = max(e[1]["n"] for e in pool)
    pool = [e for e in pool if e[1]["n"] == most]
    chosen = max(pool, key=lambda e: (e[1].get("k") or 0, e[1].get("frechet_distance") is not None, saved_at(*e)))
    where = f"the most {'test ' if chosen[1]['split'] == 'test' else ''}images ({most:,})"
    return chosen, (
        f"the evaluation with the largest K ({chosen[1].get('k') or 0}) among those on {where}, of "
        f"{len(evaluations)} saved; the others are listed below"
    )


def evaluation_section(chosen: tuple[Path, dict] | None, why: str, evaluations: list[tuple[Path, dict]]) -> str:
    if chosen is None:
        return (
            "<h2>Evaluation</h2><p>No saved evaluation yet: run <code>vaelab evaluate RUN</code> "
            "(or <code>vaelab report RUN</code> without <code>--no-eval</code>).</p>"
        )
    path, e = chosen
    rows = "".join(
        f'<tr><td class="k">{name}</td><td>{value}</td><td class="k">{unit}</td><td class="m">{meaning}</td></tr>'
        for name, value, unit, meaning in evaluation_rows(e)
    )
    table = (
        f'<table><tr><th class="k">measure</th><th>value</th><th class="k">unit</th>'
        f'<th class="k">what it means</th></tr>{rows}</table>'
    )
    return (
        f'<h2>Evaluation</h2><p>{_settings(path, e)}</p><p class="note">Shown: {html.escape(why)}.</p>'
        f"{table}{_other_evaluations(chosen, evaluations)}"
    )


def _settings(path: Path, e: dict) -> str:
    """One sentence: what was measured, with which K and seed, where and when."""
    classes = f" (classes {', '.join(map(str, e['classes']))})" if e.get("classes") else ""
    k = e.get("k") or 0
    dataset = html.escape(str(e.get("dataset", "?")))
    what = (
        f"Measured on the {dataset} {html.escape(e['split'])} split{classes}: <b>{e['n']:,} images</b>, "
        f"<b>seed {e.get('seed', '?')}</b> for every random draw, "
    )
    what += f"<b>K = {k}</b> importance samples per image for the NLL bound" if k else "no IWAE bound (K = 0)"
    if e.get("frechet_n"):
        what += f", {e['frechet_n']} samples for the Fréchet distance"
    where = []
    if e.get("weights"):
        where.append("the moving average of the weights" if e["weights"] == "ema" else "the raw weights")
    if e.get("device"):
        where.append(f"on {html.escape(e['device'])}")
    if e.get("torch_version"):
        where.append(f"torch {html.escape(e['torch_version'])}")
    when = html.escape(saved_at(path, e).replace("T", " "))
    where.append(f"saved {when}" if e.get("date") else f"saved {when} (the file's time)")
    folder = "evals/" if path.parent.name == "evals" else ""
    where.append(f"file {html.escape(folder + path.name)}")
    return f"{what}; {', '.join(where)}."


def evaluation_rows(e: dict) -> list[tuple[str, str, str, str]]:
    """(measure, value, unit, what it means) for each number of an evaluation, readable and in order; keys the
    table does not know (an older or newer vaelab's) come last, as they are. Values and texts are escaped. A mean
    over the images shows '± its standard error' where the evaluation has one (`<key>_se`)."""
    esc = html.escape
    rows: list[tuple[str, str, str, str]] = []
    nats = "nats per image"

    def add(name: str, value: str, unit: str, meaning: str) -> None:
        rows.append((name, value, unit, meaning))

    add(
        "ELBO",
        with_se(e, "elbo"),
        nats,
        "Evidence lower bound: log p(x) ≥ ELBO = −(reconstruction + KL), with "
        "one z per image and the analytic KL. Higher is better.",
    )
    if e.get("recon") is not None:
        add(
            "reconstruction term",
            with_se(e, "recon"),
            nats,
            "−log p(x|z): how badly the decoder explains each image from its code. Lower is better.",
        )
    if e.get("kl") is not None:
        add(
            "KL divergence",
            with_se(e, "kl"),
            nats,
            "KL(q(z|x) ‖ p(z)): what the code says about the image, before any β.",
        )
    if e.get("nll_iwae") is not None:
        add(
            f"NLL bound (IWAE, K = {e.get('k')})",
            with_se(e, "nll_iwae"),
            nats,
            "An upper bound on −log p(x) "
            "from K importance samples per image (Burda et al. 2016); it tightens as K grows. Lower is better.",
        )
        if e.get("iwae_gap") is not None:
            add(
                "IWAE gap",
                with_se(e, "iwae_gap"),
                nats,
                "−ELBO minus the NLL bound: how much tighter the bound is (≥ 0 up to noise; ≈ 0 for K = 1).",
            )
    else:
        add("NLL bound (IWAE)", "—", "", "Not computed (K = 0).")
    if e.get("bits_per_dim") is not None:
        source = "the IWAE NLL bound" if e.get("bits_per_dim_from") == "iwae" else "−ELBO"
        add(
            "bits per dimension",
            with_se(e, "bits_per_dim"),
            "bits per pixel value",
            f"{source} as a code length: NLL / (C·H·W·ln 2). Lower is better.",
        )
    else:
        add("bits per dimension", "—", "", f"Not defined: {esc(e.get('bits_per_dim_note') or 'no reason saved')}.")
    if e.get("recon_mse") is not None:
        add(
            "reconstruction MSE",
            with_se(e, "recon_mse"),
            "per pixel, pixels in [0, 1]",
            "Mean squared error of the decoded mean at z = μ, averaged over pixels and images.",
        )
    if e.get("active_units") is not None:
        add(
            "active latent dims",
            f"{e['active_units']} of {e.get('latent_dim', '?')}",
            "dims",
            "Dims whose "
            "posterior mean varies over the data (Var > 0.01); the others carry no information (posterior collapse).",
        )
    if e.get("kl_per_group"):
        add(
            "KL per latent group",
            with_se(e, "kl_per_group"),
            nats,
            "Mean KL(q(z_l | x, z_<l) || p(z_l | z_<l)) of each group of the hierarchy, the top group first; "
            "a group near 0 has collapsed onto its prior.",
        )
    if e.get("active_units_per_group") and e.get("group_dims"):
        add(
            "active dims per group",
            ", ".join(f"{a} of {d}" for a, d in zip(e["active_units_per_group"], e["group_dims"])),
            "dims",
            "Active dims of each group, top first (posterior means at every group's parents' means).",
        )
    if e.get("kl_per_dim"):
        add(
            "KL per latent dim",
            number(e["kl_per_dim"]),
            nats,
            "Mean KL of each dim, dim 0 first; near 0: a dim the model does not use.",
        )
    if e.get("frechet_distance") is not None:
        accuracy = e.get("frechet_classifier_accuracy")
        add(
            "Fréchet distance",
            number(e["frechet_distance"]),
            "no unit",
            f"Between {e.get('frechet_n')} samples and {e.get('frechet_n')} {esc(e['split'])} images in the features "
            f"of vaelab's classifier {esc(str(e.get('frechet_classifier')))}"
            + (f" ({100 * accuracy:.1f}% test accuracy)" if accuracy is not None else "")
            + ". Lower is better; comparable only with the same classifier and number of images, never with an "
            "Inception FID.",
        )
    else:
        add("Fréchet distance", "—", "", f"Not computed: {esc(e.get('frechet_note') or 'no reason saved')}.")
    if e.get("mig") is not None:
        rows.extend(disentanglement_rows(e))
    for key, value in e.items():
        if key not in SHOWN:
            add(esc(key), number(value), "", "saved by another version of vaelab")
    return rows


def disentanglement_rows(e: dict) -> list[tuple[str, str, str, str]]:
    """The rows of `vaelab evaluate --disentanglement`'s metrics (docs/evaluation.md, "Disentanglement")."""
    esc = html.escape
    factors = dim_factors(e)  # the same reading as the traversals' labels (viz.decoded)
    names, best = factors.names, factors.best_dim

    def per_factor(key: str, suffix=lambda i: "") -> str:
        values = e.get(key) or []
        return esc(", ".join(f"{f} {number(v)}{suffix(i)}" for i, (f, v) in enumerate(zip(names, values))))

    dims = factors.factor_of_dim
    return [
        (
            "MIG",
            number(e["mig"]),
            "0 to 1",
            "Mutual information gap (Chen et al. 2018): per factor, the information of the best dim minus the "
            "second's, over the factor's entropy; 1: one dim per factor. Per factor (its best dim): "
            + per_factor("mig_per_factor", lambda i: f" (z{best[i]})" if i < len(best) and best[i] is not None else ""),
        ),
        (
            "FactorVAE score",
            number(e.get("factorvae_score")),
            "accuracy",
            "Kim & Mnih 2018: with one factor held fixed, the dim that varies least names it; the majority-vote "
            f"classifier's accuracy on held-out votes (chance {number(e.get('factorvae_chance'))}, "
            f"{number(e.get('factorvae_dims'))} dims voting).",
        ),
        (
            "DCI disentanglement",
            number(e.get("dci_disentanglement")),
            "0 to 1",
            "Eastwood & Williams 2018: how much each dim serves one factor only, from the importances of a "
            f"{esc(str(e.get('dci_predictor')))} per factor; the factor each dim serves most: "
            + esc(", ".join(f"z{i} {f or '-'}" for i, f in enumerate(dims))),
        ),
        (
            "DCI completeness",
            number(e.get("dci_completeness")),
            "0 to 1",
            "How much each factor is held by one dim only: " + per_factor("dci_completeness_per_factor"),
        ),
        (
            "DCI informativeness",
            number(e.get("dci_informativeness")),
            "test accuracy",
            "How well the codes predict each factor: " + per_factor("dci_informativeness_per_factor"),
        ),
        ("disentanglement settings", "", "", esc(str(e.get("disentanglement_settings")))),
    ]


def _other_evaluations(chosen: tuple[Path, dict], evaluations: list[tuple[Path, dict]]) -> str:
    others = [e for e in evaluations if e is not chosen]
    if not others:
        return ""
    head = "".join(
        f"<th>{name}</th>"
        for name in ("saved", "split", "images", "K", "seed", "ELBO", "NLL bound", "Fréchet", "device")
    )
    body = []
    for path, e in others:
        values = [
            saved_at(path, e).replace("T", " "),
            e["split"],
            e["n"],
            e.get("k"),
            e.get("seed"),
            e["elbo"],
            e.get("nll_iwae"),
            e.get("frechet_distance"),
            e.get("device"),
        ]
        body.append("<tr>" + "".join(f"<td>{number(v)}</td>" for v in values) + "</tr>")
    return f"<h3>Other saved evaluations</h3><table><tr>{head}</tr>{''.join(body)}</table>"


def with_se(e: dict, key: str) -> str:
    """A mean over the images for the page, '± its standard error' after it where `<key>_se` is saved (a list
    pairwise: '2.62 ± 0.05, 0.41 ± 0.01'); the mean alone where it is not (an older vaelab's evaluation, or a
    single image)."""
    value, se = e[key], e.get(f"{key}_se")
    if isinstance(value, list):
        ses = se if isinstance(se, list) and len(se) == len(value) else [None] * len(value)
        return ", ".join(_pm(v, s) for v, s in zip(value, ses))
    return _pm(value, se)


def _pm(value: Any, se: Any) -> str:
    """'-156.21 ± 0.41': the error to two significant digits below 1 (0.41, 0.00031), else as `number` shows it."""
    if se is None or value is None:
        return number(value)
    return f"{number(value)} ± {f'{se:.2g}' if math.isfinite(se) and abs(se) < 1 else number(se)}"


def number(value: Any) -> str:
    """A value for the page, escaped: -156.21, 0.06247, 1.7e+12, a list as '2.62, 0.4123', None as '—'."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return "—" if value is None else html.escape(str(value))
    if isinstance(value, list):
        return ", ".join(number(v) for v in value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1 or abs(value) >= 1e5 else f"{value:.2f}"

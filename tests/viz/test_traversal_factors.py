"""traversals.png names each dim's generative factor after `vaelab evaluate --disentanglement`: the labels, the
checks that the saved evaluation is of the model plotted, and one run evaluated and plotted end to end."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from vaelab.cli import main
from vaelab.report.evaluation import disentanglement_rows
from vaelab.viz import decoded
from vaelab.viz.context import dim_factors, matching_factors
from vaelab.viz.decoded import traversal_labels
from vaelab.viz.plots import plot_run

NAMES = ["shape", "scale", "orientation", "pos_x", "pos_y"]
EVAL = {  # a 4-dim model: z0 pos_x (MIG agrees), z1 scale (MIG: shape), z2 none, z3 orientation
    "split": "test",
    "n": 64,
    "elbo": -100.0,
    "latent_dim": 4,
    "weights": "raw",
    "dataset": "shapes",
    "disentanglement_factors": NAMES,
    "mig_best_dim": [1, 1, 3, 0, 0],
    "dci_factor_of_dim": ["pos_x", "scale", None, "orientation"],
}
MODEL = dict(top_dims=4, all_dims=4, weights="raw", dataset="shapes", checkpoint_saved="2025-01-01T10:00:00")
KL = [2.5, 1.0, 0.01, 0.5]


def _saved(evaluation: dict, date: str = "2025-01-01T11:00:00") -> tuple[Path, dict]:
    return Path("evals/test.json"), {**evaluation, "date": date}


def test_labels_name_the_dci_factor_and_mig_where_it_differs():
    assert traversal_labels([0, 1, 3, 2], KL, dim_factors(EVAL)) == [
        "z[0] (KL 2.50) · pos_x (MIG: pos_y)",  # MIG's best dim for pos_x (agrees) and for pos_y
        "z[1] (KL 1.00) · scale (MIG: shape)",
        "z[3] (KL 0.50) · orientation",  # MIG agrees: nothing more to say
        "z[2] (KL 0.01) · —",  # DCI: almost no importance for any factor
    ]
    assert traversal_labels([0, 1], KL, None) == ["z[0] (KL 2.50)", "z[1] (KL 1.00)"]


def test_an_inactive_dim_gets_no_factor_name():
    # A collapsed dim's DCI importances are noise: even where the evaluation names a factor for it, the label
    # says it is inactive (and so does a dim that MIG picks as a factor's best).
    active = [True, True, True, False]
    assert traversal_labels([3, 0], KL, dim_factors(EVAL), active) == [
        "z[3] (KL 0.50) · — (inactive)",
        "z[0] (KL 2.50) · pos_x (MIG: pos_y)",
    ]
    assert traversal_labels([3], KL, None, active) == ["z[3] (KL 0.50)"]


def test_only_an_evaluation_of_the_model_plotted_names_factors():
    factors, when, why = matching_factors([_saved(EVAL)], **MODEL)
    assert factors is not None and factors.factor_of_dim[3] == "orientation" and when == "2025-01-01T11:00:00"
    assert why is None
    without = {k: v for k, v in EVAL.items() if k != "dci_factor_of_dim"}
    assert matching_factors([_saved(without)], **MODEL) == (None, "", None)  # not evaluated: nothing to say
    assert matching_factors([], **MODEL) == (None, "", None)
    for changed, reason in [
        ({"dci_factor_of_dim": ["pos_x", "scale", None]}, "3 latent dims, the model 4"),
        ({"latent_dim": 6}, "6 latent dims in all, the model 4"),
        ({"weights": "ema"}, "the ema weights"),
        ({"dataset": "shapes64"}, "on shapes64"),
    ]:
        factors, _, why = matching_factors([_saved({**EVAL, **changed})], **MODEL)
        assert factors is None and reason in why, changed
    factors, _, why = matching_factors([_saved(EVAL, "2025-01-01T09:00:00")], **MODEL)
    assert factors is None and "before the checkpoint" in why
    # an older evaluation that fits serves when the newest does not: it measured the same checkpoint
    newest = _saved({**EVAL, "weights": "ema"}, "2025-01-01T12:00:00")
    factors, when, why = matching_factors([newest, _saved(EVAL)], **MODEL)
    assert factors is not None and when == "2025-01-01T11:00:00" and why is None


def test_damaged_factor_keys_never_raise():
    damaged = {**EVAL, "mig_best_dim": "z1", "dci_factor_of_dim": [3, True, None, "pos_y"]}
    factors = dim_factors(damaged)
    assert factors.best_dim == [] and factors.factor_of_dim == [None, None, None, "pos_y"]
    assert traversal_labels([0, 3], KL, factors) == ["z[0] (KL 2.50) · —", "z[3] (KL 0.50) · pos_y"]
    assert dim_factors({}).names == [] and dim_factors({"disentanglement_factors": 7}).names == []
    # the report reads the same keys the same way
    text = next(row[3] for row in disentanglement_rows({**EVAL, "mig": 0.1}) if row[0] == "DCI disentanglement")
    assert "z0 pos_x, z1 scale, z2 -, z3 orientation" in text


@pytest.fixture
def drawn(monkeypatch):
    """The row labels and x label of each traversal picture drawn."""
    seen: list[tuple[list[str], str]] = []
    real = decoded.image_figure

    def spy(blocks, **kwargs):
        seen.append((list(blocks[-1].row_labels), kwargs.get("xlabel") or ""))
        return real(blocks, **kwargs)

    monkeypatch.setattr(decoded, "image_figure", spy)
    return seen


def test_a_run_evaluated_for_disentanglement_names_its_factors(tiny_run, tmp_path, drawn, capsys):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    lines: list[str] = []
    plot_run(run, only="traversals", limit=16, log=lines.append)
    labels, xlabel = drawn[-1]
    assert len(labels) == 2 and all(label.startswith("z[") and "·" not in label for label in labels)
    assert "DCI" not in xlabel and lines == []  # never evaluated: the plain labels, nothing logged

    small = ["--iwae-k", "0", "--no-frechet", "--limit", "16", "--no-progress", "--json"]
    assert main(["evaluate", str(run), *small, "--disentanglement", "--disentanglement-n", "100"]) == 0
    saved = json.loads(capsys.readouterr().out)
    plot_run(run, only="traversals", limit=16, log=lines.append)
    labels, xlabel = drawn[-1]
    for label in labels:
        dim = int(label[2 : label.index("]")])
        assert f" · {saved['dci_factor_of_dim'][dim] or '—'}" in label
    assert "DCI" in xlabel and "MIG" in xlabel and lines == []

    # the run trains on (here: its checkpoint rewritten later): the old factors are no longer this model's
    later = (run / "eval.json").stat().st_mtime + 3600
    os.utime(run / "checkpoint.safetensors", (later, later))
    plot_run(run, only="traversals", limit=16, log=lines.append)
    assert not any("·" in label for label in drawn[-1][0]) and "DCI" not in drawn[-1][1]
    assert len(lines) == 1 and "before the checkpoint" in lines[0]
    assert (run / "plots" / "traversals.png").exists()

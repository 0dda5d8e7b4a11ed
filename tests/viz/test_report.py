"""`vaelab report`: readable evaluation names with units and meanings, the model's facts, and every evaluation
kept with its settings, the page saying which one it shows."""

from __future__ import annotations

import html
import json
import re
import shutil

import pytest
import torch

import vaelab
from vaelab.models import count_parameters
from vaelab.report.evaluation import choose_evaluation
from vaelab.report.html import write_report
from vaelab.training.runfiles import read_evals

QUIET = dict(progress=False, log=lambda line: None)
FAST = dict(frechet=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return vaelab.train(
        "mlp2",
        dataset="shapes",
        image_size=16,
        limit=64,
        val_size=32,
        batch_size=32,
        epochs=1,
        out=tmp_path_factory.mktemp("run") / "run",
        **QUIET,
    ).path


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


def _page(run) -> str:
    write_report(run, log=lambda line: None)
    text = (run / "report.html").read_text()
    return html.unescape(re.sub(r'src="data:[^"]+"', "", text))


def _evaluation(page: str) -> str:
    return page[page.index("<h2>Evaluation</h2>") : page.index("<h2>Training, per epoch</h2>")]


def test_evaluations_with_other_settings_are_kept(run):
    vaelab.evaluate(run, limit=40, iwae_k=5, **FAST)
    quick = vaelab.evaluate(run, limit=40, iwae_k=2, **FAST)
    assert sorted(p.name for p in (run / "evals").iterdir()) == ["test-k2-seed0-n40.json", "test-k5-seed0-n40.json"]
    assert json.loads((run / "eval.json").read_text()) == quick  # eval.json: the latest, as it was
    saved = json.loads((run / "evals" / "test-k2-seed0-n40.json").read_text())
    assert {k: v for k, v in saved.items() if k not in ("date", "torch_version", "vaelab_version")} == quick
    assert saved["torch_version"] == torch.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", saved["date"])
    evaluations, problems = read_evals(run)
    assert problems == [] and [e["k"] for _, e in evaluations] == [2, 5]  # newest first; eval.json not twice


def test_the_report_shows_the_largest_k_and_lists_the_others(run):
    vaelab.evaluate(run, limit=40, iwae_k=5, **FAST)
    vaelab.evaluate(run, limit=40, iwae_k=2, **FAST)  # a quick one afterwards does not replace it
    vaelab.evaluate(run, limit=20, iwae_k=9, **FAST)  # fewer images: not preferred, whatever its K
    section = _evaluation(_page(run))
    assert "NLL bound (IWAE, K = 5)" in section and "K = 9)" not in section.split("Other saved evaluations")[0]
    assert (
        "Shown: the evaluation with the largest K (5) among those on the most test images (40), of 3 saved" in section
    )
    assert "<b>40 images</b>, <b>seed 0</b> for every random draw, <b>K = 5</b> importance samples" in section
    assert "file evals/test-k5-seed0-n40.json" in section and "on cpu" in section
    others = section.split("Other saved evaluations")[1]
    assert others.count("<tr>") == 3  # a header and the two others


def test_the_evaluation_table_is_readable(run):
    e = vaelab.evaluate(run, limit=40, iwae_k=3, **FAST)
    section = _evaluation(_page(run))
    for label in (
        "ELBO",
        "reconstruction term",
        "KL divergence",
        "NLL bound (IWAE, K = 3)",
        "IWAE gap",
        "bits per dimension",
        "reconstruction MSE",
        "active latent dims",
        "KL per latent dim",
        "Fréchet distance",
    ):
        assert f'<td class="k">{label}</td>' in section, label
    assert "nats per image" in section and "per pixel, pixels in [0, 1]" in section
    assert "what it means" in section and "Higher is better" in section
    assert f"Not defined: {e['bits_per_dim_note']}" in section and "Not computed: skipped (--no-frechet)" in section
    for raw in ("bits_per_dim_note", "frechet_note", "nll_iwae", ">k<", ">n<", "kl_per_dim"):
        assert raw not in section, raw  # no raw JSON keys


def test_the_report_states_the_model_and_the_software(run):
    page = _page(run)
    model = page[page.index("<h2>Model</h2>") : page.index("<h2>Evaluation</h2>")]
    params = count_parameters(vaelab.load(run))
    assert f'trainable parameters</td><td class="m">{params:,}' in model
    assert "<b>mlp2</b>: MLP 784-256-2 on MNIST" in model  # the preset's description
    assert "changed from the preset" in model and "data.name = 'shapes'" in model
    assert f"torch {torch.__version__}" in model and "device setting auto" in model
    assert "No saved evaluation yet" in page


def test_an_older_single_eval_json_is_still_shown(run):
    e = vaelab.evaluate(run, limit=30, iwae_k=4, write=False, **FAST)
    old = {k: v for k, v in e.items() if k != "device"}  # as an older vaelab wrote it: no evals/
    (run / "eval.json").write_text(json.dumps(old))
    section = _evaluation(_page(run))
    assert "NLL bound (IWAE, K = 4)" in section and "<b>30 images</b>" in section
    assert "the only evaluation saved" in section and "(the file's time)" in section and "file eval.json" in section


def test_a_damaged_evaluation_file_costs_only_itself(run):
    vaelab.evaluate(run, limit=30, iwae_k=3, **FAST)
    (run / "evals" / "test-k7-seed0-n30.json").write_text("{not json")
    lines = []
    write_report(run, log=lines.append)
    assert any("test-k7-seed0-n30.json: not JSON" in line for line in lines), lines
    assert "NLL bound (IWAE, K = 3)" in (run / "report.html").read_text()


def test_choose_prefers_the_test_split_then_most_images_then_largest_k(tmp_path):
    def e(split, n, k):
        return tmp_path / f"{split}{n}{k}.json", {"split": split, "n": n, "k": k, "elbo": -1.0, "date": f"{n}{k}"}

    chosen, why = choose_evaluation([e("train", 500, 100), e("test", 100, 1), e("test", 100, 50), e("test", 20, 999)])
    assert chosen[1] == {"split": "test", "n": 100, "k": 50, "elbo": -1.0, "date": "10050"}
    assert "largest K (50)" in why and "most test images (100)" in why
    assert choose_evaluation([])[0] is None

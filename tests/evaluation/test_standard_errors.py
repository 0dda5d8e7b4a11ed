"""Every mean `vaelab evaluate` reports comes with its standard error over the images (`<key>_se`): the helper
against a hand computation, evaluate's errors against the per-image values, one image (None), the table, the
schema, and an older eval.json without them in the report."""

from __future__ import annotations

import html
import json
import math
import shutil
import statistics

import numpy as np
import pytest
import torch

import vaelab
from vaelab.cli import main
from vaelab.cli.evaluate import format_text
from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.evaluation.scores import elbo_terms_per_image, iwae_per_image, posterior_stats
from vaelab.evaluation.summary import evaluate_model, mean_and_se
from vaelab.models import build_model
from vaelab.report.evaluation import choose_evaluation, evaluation_rows, evaluation_section
from vaelab.report.html import write_report
from vaelab.training.runfiles import read_eval, read_evals

MEANS = ("elbo", "recon", "kl", "nll_iwae", "iwae_gap", "bits_per_dim", "recon_mse")


def _se(values) -> float:
    """The standard error of the mean, as numpy computes it: sample std (ddof=1) / sqrt(n)."""
    x = np.asarray(values, dtype=np.float64)
    return float(np.std(x, ddof=1) / math.sqrt(len(x)))


def _binary(n: int, seed: int = 0) -> torch.Tensor:
    """n binary 16x16 grey images, uint8 in {0, 255}."""
    return (torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) > 0.6).to(torch.uint8) * 255


# --------------------------------------------------------------------------- the helper


def test_mean_and_se_by_hand():
    mean, se = mean_and_se([1.0, 2.0, 3.0, 4.0])
    # mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5 over n - 1 = 3; se = sqrt(5 / 3) / sqrt(4)
    assert mean == 2.5 and se == pytest.approx(math.sqrt(5 / 3) / 2, rel=1e-15)
    assert mean_and_se(torch.tensor([1.0, 3.0])) == (2.0, 1.0)  # std sqrt(2), over sqrt(2)
    assert mean_and_se([5.0, 5.0, 5.0]) == (5.0, 0.0)


def test_mean_and_se_agrees_with_numpy_and_statistics_in_float64():
    values = torch.randn(1000, generator=torch.Generator().manual_seed(3)) * 40 - 150  # float32, like the scores
    floats = values.tolist()
    mean, se = mean_and_se(values)
    assert mean == pytest.approx(statistics.fmean(floats), rel=1e-13)  # float32 arithmetic is off by ~1e-7
    assert se == pytest.approx(statistics.stdev(floats) / math.sqrt(1000), rel=1e-12)
    assert se == pytest.approx(_se(floats), rel=1e-12)
    assert isinstance(mean, float) and isinstance(se, float)


def test_one_value_has_no_standard_error():
    assert mean_and_se([-90.5]) == (-90.5, None)
    assert mean_and_se(torch.tensor([[7.0]])) == (7.0, None)


# --------------------------------------------------------------------------- evaluate's errors


@pytest.fixture(scope="module")
def tiny_model(tiny_run):
    return vaelab.load(tiny_run)


def test_every_mean_has_the_standard_error_of_its_per_image_values(tiny_model):
    images, k = _binary(24), 5
    r = evaluate_model(tiny_model, images, binarize="static", likelihood="bernoulli", k=k, seed=4)
    terms = elbo_terms_per_image(tiny_model, images, seed=4)
    log_px = iwae_per_image(tiny_model, images, k, seed=4).double()
    mse = posterior_stats(tiny_model, images, seed=4).recon_mse
    for key in ("elbo", "recon", "kl"):
        assert r[key] == pytest.approx(terms[key].double().mean().item(), rel=1e-12)
        assert r[f"{key}_se"] == pytest.approx(_se(terms[key]), rel=1e-9), key
    assert r["nll_iwae_se"] == pytest.approx(_se(-log_px), rel=1e-9)
    assert r["iwae_gap_se"] == pytest.approx(_se(log_px - terms["elbo"].double()), rel=1e-9)  # each image's gap
    combined = math.hypot(r["elbo_se"], r["nll_iwae_se"])  # as if the ELBO and the NLL were independent: they are not
    assert r["iwae_gap_se"] != pytest.approx(combined, rel=1e-3)
    assert r["bits_per_dim_from"] == "iwae"
    assert r["bits_per_dim_se"] == pytest.approx(_se(-log_px) / (16 * 16 * math.log(2)), rel=1e-9)
    assert r["recon_mse_se"] == pytest.approx(_se(mse), rel=1e-9)
    assert all(r[f"{key}_se"] > 0 for key in MEANS)
    assert "kl_per_group_se" not in r  # one latent group

    elbo_only = evaluate_model(tiny_model, images, binarize="static", likelihood="bernoulli", k=0, seed=4)
    assert elbo_only["nll_iwae_se"] is None and elbo_only["iwae_gap_se"] is None
    assert elbo_only["bits_per_dim_from"] == "elbo"
    assert elbo_only["bits_per_dim_se"] == pytest.approx(_se(terms["elbo"]) / (256 * math.log(2)), rel=1e-9)


def test_no_standard_error_where_there_is_no_mean(tiny_model):
    r = evaluate_model(tiny_model, _binary(6), binarize="none", likelihood="bernoulli", k=0)  # grey: no bits/dim
    assert r["bits_per_dim"] is None and r["bits_per_dim_se"] is None
    assert r["nll_iwae"] is None and r["nll_iwae_se"] is None and r["iwae_gap_se"] is None
    assert r["elbo_se"] > 0


def test_one_image_gives_none_not_nan(tiny_model):
    r = evaluate_model(tiny_model, _binary(1), binarize="static", likelihood="bernoulli", k=3)
    assert r["n"] == 1 and all(math.isfinite(r[key]) for key in MEANS)
    assert all(r[f"{key}_se"] is None for key in MEANS)
    json.dumps(r, allow_nan=False)  # a NaN would be written as NaN, which is not JSON


def test_a_hierarchy_has_the_standard_error_of_each_groups_kl():
    torch.manual_seed(0)
    config = ModelConfig(encoder="hvae", decoder="hvae", latent_dim=3, width=16, depth=1, resolutions=(8, 4, 1))
    model = build_model(ModelConfig(**{**config.__dict__, "groups": 2}), ObjectiveConfig(), (1, 16, 16)).eval()
    images = _binary(10, seed=1)
    r = evaluate_model(model, images, binarize="static", k=0, seed=2)
    terms = elbo_terms_per_image(model, images, seed=2)
    groups = len(r["kl_per_group"])
    assert groups == len(model.group_shapes) > 1 and len(r["kl_per_group_se"]) == groups
    for i, se in enumerate(r["kl_per_group_se"], 1):
        assert se == pytest.approx(_se(terms[f"kl_{i}"]), rel=1e-9)
    one = evaluate_model(model, images[:1], binarize="static", k=0)
    assert one["kl_per_group_se"] == [None] * groups


# --------------------------------------------------------------------------- the table and the JSON


def _result(**changes) -> dict:
    r = {
        "dataset": "mnist",
        "split": "test",
        "n": 10000,
        "seed": 0,
        "classes": None,
        "k": 1000,
        "elbo": -156.214,
        "elbo_se": 0.4123,
        "recon": 150.75,
        "recon_se": 0.39,
        "kl": 5.46,
        "kl_se": 0.021,
        "nll_iwae": 151.40,
        "nll_iwae_se": 0.405,
        "iwae_gap": 4.81,
        "iwae_gap_se": 0.052,
        "bits_per_dim": 0.2786,
        "bits_per_dim_se": 0.00072,
        "bits_per_dim_from": "iwae",
        "bits_per_dim_note": None,
        "recon_mse": 0.06247,
        "recon_mse_se": 0.00031,
        "latent_dim": 2,
        "active_units": 2,
        "kl_per_dim": [2.62, 2.84],
        "frechet_distance": None,
        "frechet_note": "skipped (--no-frechet)",
    }
    return {**r, **changes}


def test_the_table_shows_mean_plus_minus_se_in_aligned_columns():
    lines = format_text(_result()).splitlines()
    assert "-156.21 ± 0.41 nats" in lines[1] and "recon 150.75 ± 0.39 + KL 5.46 ± 0.02" in lines[1]
    assert "151.40 ± 0.41 nats" in lines[2] and "4.81 ± 0.05 tighter than -ELBO" in lines[2]
    assert "0.2786 ± 0.0007" in lines[3] and "0.06247 ± 0.00031" in lines[4]
    pm, note = lines[1].index("±"), lines[1].index("recon ")
    assert [line.index("±") for line in lines[1:5]] == [pm] * 4  # the ± in one column
    assert all(line[note - 3 : note] == "   " and line[note] != " " for line in lines[1:])  # the notes in one


def test_the_table_of_a_hierarchy_and_of_an_evaluation_without_errors():
    hierarchy = _result(
        kl_per_group=[2.6, 0.41],
        kl_per_group_se=[0.05, 0.012],
        group_dims=[1, 1],
        active_units_per_group=[1, 1],
    )
    assert "top first: 2.60 ± 0.05, 0.41 ± 0.01" in format_text(hierarchy)
    plain = format_text({k: v for k, v in hierarchy.items() if not k.endswith("_se")})  # an older result
    assert "±" not in plain and "-156.21 nats" in plain and "top first: 2.60, 0.41" in plain
    one = format_text(_result(**{f"{key}_se": None for key in MEANS}, n=1))
    assert "±" not in one and "-156.21 nats" in one


def test_json_and_eval_json_have_the_errors(capsys, tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    assert main(["evaluate", str(run), "--limit", "12", "--iwae-k", "3", "--no-frechet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all(f"{key}_se" in out for key in MEANS)
    assert out["elbo_se"] > 0 and out["nll_iwae_se"] > 0 and out["bits_per_dim_se"] is None  # grey: no bits/dim
    evaluation, problem = read_eval(run / "eval.json")
    assert problem is None and evaluation == out


# --------------------------------------------------------------------------- the schema and the report


def test_the_schema_checks_the_errors(tmp_path):
    path = tmp_path / "eval.json"
    base = {"split": "test", "n": 16, "elbo": -90.5}
    path.write_text(json.dumps({**base, "elbo_se": "x"}))
    evaluation, problem = read_eval(path)
    assert evaluation is None and "'elbo_se' is 'x', not a number" in problem
    path.write_text(json.dumps({**base, "kl_per_group_se": [0.1, "a"]}))
    assert "'kl_per_group_se' is 'a', not a number" in read_eval(path)[1]
    path.write_text(json.dumps({**base, "elbo_se": 1, "nll_iwae_se": None, "kl_per_group_se": [0.5, None]}))
    evaluation, problem = read_eval(path)
    assert problem is None and evaluation["elbo_se"] == 1.0 and isinstance(evaluation["elbo_se"], float)


OLD_EVAL = {  # an eval.json as vaelab wrote it before the standard errors
    "split": "test",
    "n": 64,
    "seed": 0,
    "elbo": -90.5,
    "recon": 80.0,
    "kl": 10.5,
    "k": 5,
    "nll_iwae": 88.25,
    "iwae_gap": 2.25,
    "bits_per_dim": None,
    "bits_per_dim_from": None,
    "bits_per_dim_note": "grey levels",
    "recon_mse": 0.01,
    "latent_dim": 2,
    "active_units": 2,
    "kl_per_dim": [5.0, 5.5],
    "frechet_distance": None,
    "frechet_n": None,
    "frechet_classifier": None,
    "frechet_classifier_accuracy": None,
    "frechet_note": "skipped",
    "dataset": "shapes",
    "preset": "mlp2",
    "classes": None,
}


def test_an_older_eval_json_without_errors_loads_and_renders(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "eval.json").write_text(json.dumps(OLD_EVAL))
    evaluations, problems = read_evals(run)
    assert problems == [] and [e for _, e in evaluations] == [OLD_EVAL]
    chosen, why = choose_evaluation(evaluations)
    section = evaluation_section(chosen, why, evaluations)
    assert "-90.50" in section and "88.25" in section and "±" not in section
    assert "another version" not in section
    page = html.unescape(write_report(run, log=lambda line: None).read_text())
    shown = page[page.index("<h2>Evaluation</h2>") : page.index("<h2>Training, per epoch</h2>")]
    assert "-90.50" in shown and "88.25" in shown and "±" not in shown


def test_the_report_shows_the_errors_where_saved():
    new = {**OLD_EVAL, "elbo_se": 0.4123, "recon_se": 1.5, "kl_se": None, "nll_iwae_se": 0.000312}
    rows = {name: value for name, value, _, _ in evaluation_rows(new)}
    assert rows["ELBO"] == "-90.50 ± 0.41" and rows["reconstruction term"] == "80.00 ± 1.50"
    assert rows["KL divergence"] == "10.50" and rows["NLL bound (IWAE, K = 5)"] == "88.25 ± 0.00031"
    assert rows["IWAE gap"] == "2.25"
    assert not any("another version" in meaning for _, _, _, meaning in evaluation_rows(new))  # known keys
    groups = {**new, "kl_per_group": [2.6, 0.41], "kl_per_group_se": [0.05, None]}
    assert {name: value for name, value, _, _ in evaluation_rows(groups)}["KL per latent group"] == "2.60 ± 0.05, 0.41"

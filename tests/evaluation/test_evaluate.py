"""`vaelab evaluate` / `vaelab.evaluate`: every number, eval.json, bits/dim rules, determinism, errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

import vaelab
from vaelab.api import _frechet_classifier
from vaelab.cli import main
from vaelab.evaluation.summary import bits_per_dim_note

KEYS = {
    "split",
    "n",
    "seed",
    "elbo",
    "recon",
    "kl",
    "k",
    "nll_iwae",
    "iwae_gap",
    "bits_per_dim",
    "bits_per_dim_from",
    "bits_per_dim_note",
    "recon_mse",
    "latent_dim",
    "active_units",
    "kl_per_dim",
    "frechet_distance",
    "frechet_n",
    "frechet_classifier",
    "frechet_classifier_accuracy",
    "frechet_note",
    "dataset",
    "preset",
    "classes",
    "device",
    "weights",
    *(f"{key}_se" for key in ("elbo", "recon", "kl", "nll_iwae", "iwae_gap", "bits_per_dim", "recon_mse")),
}


def _json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_every_key_and_matches_eval_json(capsys, tmp_path, mnist_run, data_root):
    run = shutil.copytree(mnist_run, tmp_path / "run")
    out = _json(
        capsys,
        [
            "evaluate",
            str(run),
            "--limit",
            "40",
            "--iwae-k",
            "20",
            "--no-frechet",
            "--json",
            "--data-dir",
            str(data_root),
        ],
    )
    assert set(out) == KEYS
    assert out["n"] == 40 and out["k"] == 20 and out["latent_dim"] == 2 and len(out["kl_per_dim"]) == 2
    assert out["elbo"] < 0 and out["nll_iwae"] > 0 and out["recon_mse"] > 0
    assert out["iwae_gap"] == pytest.approx(-out["elbo"] - out["nll_iwae"]) and out["iwae_gap"] > -0.5
    assert out["bits_per_dim"] is None and "Bernoulli" in out["bits_per_dim_note"]  # grey levels
    assert out["frechet_distance"] is None and "no-frechet" in out["frechet_note"]
    assert json.loads((run / "eval.json").read_text()) == out
    assert not list(run.glob(".*tmp"))


def test_deterministic_for_a_seed(capsys, tmp_path, mnist_run, data_root):
    run = shutil.copytree(mnist_run, tmp_path / "run")
    argv = [
        "evaluate",
        str(run),
        "--limit",
        "30",
        "--iwae-k",
        "5",
        "--no-frechet",
        "--json",
        "--data-dir",
        str(data_root),
    ]
    first = _json(capsys, argv)
    assert _json(capsys, argv) == first
    other = _json(capsys, argv[:-2] + ["--seed", "1", "--data-dir", str(data_root)])
    assert other["elbo"] != first["elbo"] and other["recon_mse"] == first["recon_mse"]  # z = mu has no noise


def test_chunk_does_not_change_the_numbers(capsys, tmp_path, mnist_run, data_root):
    run = shutil.copytree(mnist_run, tmp_path / "run")
    argv = [
        "evaluate",
        str(run),
        "--limit",
        "30",
        "--iwae-k",
        "9",
        "--no-frechet",
        "--json",
        "--data-dir",
        str(data_root),
    ]
    a, b = _json(capsys, argv + ["--chunk", "4"]), _json(capsys, argv + ["--chunk", "100000"])
    assert a["nll_iwae"] == pytest.approx(b["nll_iwae"], abs=1e-3)


def test_text_output_is_a_few_aligned_lines(capsys, tmp_path, mnist_run, data_root):
    run = shutil.copytree(mnist_run, tmp_path / "run")
    assert (
        main(["evaluate", str(run), "--limit", "20", "--iwae-k", "0", "--no-frechet", "--data-dir", str(data_root)])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mnist test: 20 images") and len(lines) == 7
    assert "skipped (--iwae-k 0)" in lines[2] and "not defined" in lines[3]
    # means right-aligned in one column, then '± se unit' in the next, notes after it
    pm, note = lines[1].index("±"), lines[1].index("recon ")
    assert lines[1][pm - 1 : pm + 2] == " ± " and lines[4][pm - 1 : pm + 2] == " ± "  # ELBO, recon MSE
    assert all(line[pm - 2] != " " and line[pm - 1] == " " for line in lines[1:])  # every mean ends there
    assert all(line[note - 3 : note] == "   " and line[note] != " " for line in lines[1:])
    assert json.loads((run / "eval.json").read_text())["nll_iwae"] is None


def test_bits_per_dim_for_binarised_data(tmp_path, binary_run):
    run = shutil.copytree(binary_run, tmp_path / "run")
    r = vaelab.evaluate(run, limit=50, iwae_k=10, frechet=False)
    assert r["bits_per_dim_from"] == "iwae" and r["bits_per_dim_note"] is None
    assert r["bits_per_dim"] == pytest.approx(r["nll_iwae"] / (16 * 16 * math.log(2)))
    r = vaelab.evaluate(run, limit=50, iwae_k=0, frechet=False)
    assert r["bits_per_dim_from"] == "elbo" and r["bits_per_dim"] == pytest.approx(-r["elbo"] / (256 * math.log(2)))
    assert r["active_units"] <= r["latent_dim"] == 4


@pytest.mark.parametrize(
    "binarize, likelihood, defined",
    [
        ("static", "bernoulli", True),
        ("dynamic", "bernoulli", True),
        ("none", "bernoulli", False),
        ("static", "gaussian", False),
        ("none", "gaussian", False),
    ],
)
def test_bits_per_dim_only_for_discrete_data(binarize, likelihood, defined):
    assert (bits_per_dim_note(binarize, likelihood) is None) == defined


def test_frechet_end_to_end_with_a_small_classifier(tmp_path, mnist_run, data_root):
    run = shutil.copytree(mnist_run, tmp_path / "run")
    r = vaelab.evaluate(
        run,
        limit=300,
        iwae_k=0,
        data_dir=data_root,
        cache_dir=tmp_path / "cache",
        classifier_epochs=1,
        classifier_limit=2000,
        frechet_n=256,
    )
    assert r["frechet_n"] == 256 and r["frechet_distance"] > 0 and r["frechet_note"] is None
    assert 0.5 < r["frechet_classifier_accuracy"] <= 1 and r["frechet_classifier"].startswith("mnist-")
    again = vaelab.evaluate(
        run,
        limit=300,
        iwae_k=0,
        data_dir=data_root,
        cache_dir=tmp_path / "cache",
        classifier_epochs=1,
        classifier_limit=2000,
        frechet_n=256,
    )
    assert again["frechet_distance"] == r["frechet_distance"]  # cached classifier, seeded samples
    few = vaelab.evaluate(
        run,
        limit=100,
        iwae_k=0,
        data_dir=data_root,
        cache_dir=tmp_path / "cache",
        classifier_epochs=1,
        classifier_limit=2000,
    )
    assert few["frechet_distance"] is None and "at least 256" in few["frechet_note"]


def test_expost_frechet_distance_is_added_beside_the_prior_one(tmp_path, mnist_run, data_root):
    run = shutil.copytree(mnist_run, tmp_path / "run")
    common = dict(limit=300, iwae_k=0, data_dir=data_root, classifier_epochs=1, classifier_limit=2000, frechet_n=256)
    r = vaelab.evaluate(run, expost_levels=1, expost_n=200, **common)
    assert r["expost_levels"] == 1 and r["expost_groups"] == 1 and r["expost_n"] == 200
    assert r["frechet_distance_expost"] > 0 and r["frechet_distance_expost"] != r["frechet_distance"]
    plain = vaelab.evaluate(run, **common)
    assert plain["frechet_distance"] == r["frechet_distance"]  # the prior's samples, as without the option
    assert "frechet_distance_expost" not in plain
    names = sorted(p.name for p in (run / "evals").iterdir())
    assert names == ["test-k0-seed0-n300-fd256-expost1.json", "test-k0-seed0-n300-fd256.json"]  # neither replaced
    with pytest.raises(vaelab.VaelabError, match="expost levels must be <= 1, got 2"):
        vaelab.evaluate(run, expost_levels=2, write=False, **common)
    with pytest.raises(vaelab.VaelabError, match="cannot go with --no-frechet"):
        vaelab.evaluate(run, expost_levels=1, frechet=False, write=False, **common)


def test_unlabelled_folder_has_no_frechet(tmp_path):
    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    run = tmp_path / "run"
    vaelab.train(
        "mlp2",
        dataset=f"folder:{tmp_path}",
        image_size=8,
        grayscale=True,
        epochs=1,
        val_size=0,
        batch_size=4,
        out=run,
        progress=False,
        log=lambda line: None,
    )
    r = vaelab.evaluate(run, iwae_k=3)
    assert r["frechet_distance"] is None and "at least 256" in r["frechet_note"] and r["n"] == 1
    classifier, note = _frechet_classifier(vaelab.Run(run).config, None, tmp_path, 1, None, "cpu", None)
    assert classifier is None and "no labels" in note


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--iwae-k", "-1"], "must be >= 0"),
        (["--iwae-k", "many"], "expected a whole number"),
        (["--chunk", "0"], "must be >= 1"),
        (["--frechet-n", "0"], "must be >= 1"),
        (["--split", "val"], "invalid choice"),
    ],
)
def test_bad_flags_are_one_line_exit_2(capsys, mnist_run, argv, needle):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(mnist_run)] + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_api_rejects_bad_values(mnist_run):
    with pytest.raises(vaelab.VaelabError, match="iwae_k"):
        vaelab.evaluate(mnist_run, iwae_k=-2)
    with pytest.raises(vaelab.VaelabError, match="chunk"):
        vaelab.evaluate(mnist_run, chunk=0)

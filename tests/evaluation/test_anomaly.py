"""Anomaly scores, the rank-based AUROC (against a brute-force count), `vaelab anomaly`."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import vaelab
from vaelab.cli import main
from vaelab.evaluation.anomaly import auroc

from clihelp import one_line_error


def brute_force_auroc(scores, positive) -> float:
    """Over all (positive, negative) pairs: 1 when the positive scores higher, 1/2 on a tie."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=40).filter(
        lambda xs: 0 < sum(p for _, p in xs) < len(xs)
    )
)
def test_auroc_equals_the_pairwise_count_with_ties(items):
    scores, positive = [float(s) for s, _ in items], [p for _, p in items]
    assert auroc(scores, positive) == pytest.approx(brute_force_auroc(scores, positive), abs=1e-12)


def test_auroc_extremes_and_errors():
    assert auroc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert auroc([1, 2, 3, 4], [True, True, False, False]) == 0.0
    assert auroc([5, 5, 5, 5], [True, False, True, False]) == 0.5
    assert auroc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 1.0
    with pytest.raises(ValueError, match="both"):
        auroc([1, 2], [True, True])
    with pytest.raises(ValueError, match="finite"):
        auroc([1, float("nan")], [True, False])


def test_cli_dataset_with_normal_classes_writes_csv(capsys, tmp_path, mnist_run, data_root):
    out = tmp_path / "scores.csv"
    assert (
        main(
            [
                "anomaly",
                str(mnist_run),
                "--dataset",
                "mnist",
                "--limit",
                "120",
                "--normal-classes",
                "1",
                "-o",
                str(out),
                "--data-dir",
                str(data_root),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "120 images scored by -ELBO" in text and "AUROC" in text and str(out) in text
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 120 and list(rows[0]) == ["index", "label", "score"]
    api = vaelab.anomaly_scores(mnist_run, dataset="mnist", limit=120, normal_classes=[1], data_dir=data_root)
    np.testing.assert_allclose([float(r["score"]) for r in rows], api.scores.numpy(), atol=1e-4)
    labels = np.array([int(r["label"]) for r in rows])
    assert f"AUROC {auroc(api.scores, labels != 1):.4f}" in text and api.auroc == auroc(api.scores, labels != 1)
    assert (api.scores > 0).all()  # -ELBO in nats


def test_iwae_score_is_lower_than_elbo_score_on_average(mnist_run, data_root):
    kw = dict(dataset="mnist", limit=40, data_dir=data_root)
    elbo = vaelab.anomaly_scores(mnist_run, score="elbo", **kw).scores
    iwae = vaelab.anomaly_scores(mnist_run, score="iwae", k=30, **kw)
    assert iwae.k == 30 and iwae.scores.shape == (40,) and iwae.scores.mean() < elbo.mean()


def test_cli_input_folder_with_class_subfolders(capsys, tmp_path, mnist_run):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):  # RGB, another size: read as grey and resized to 28x28 like the run
            pixels = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / f"{i}.png")
    out = tmp_path / "s.csv"
    assert (
        main(
            [
                "anomaly",
                str(mnist_run),
                "--input",
                str(tmp_path / "imgs"),
                "--score",
                "iwae",
                "--k",
                "4",
                "--normal-classes",
                "0",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == [f"{c}/{i}.png" for c in "ab" for i in range(3)]
    assert [r["label"] for r in rows] == ["0"] * 3 + ["1"] * 3
    assert "AUROC" in capsys.readouterr().out


def test_cli_without_output_prints_the_most_anomalous(capsys, tmp_path, mnist_run):
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 80 * i, np.uint8)).save(tmp_path / "imgs" / f"x{i}.png")
    assert main(["anomaly", str(mnist_run), "--input", str(tmp_path / "imgs")]) == 0
    out = capsys.readouterr().out
    assert "3 images scored" in out and "most anomalous: x" in out and "AUROC" not in out


@pytest.mark.parametrize(
    "extra, needle",
    [
        ([], "one of the arguments --input --dataset is required"),
        (["--dataset", "mnist", "--input", "x"], "not allowed with"),
        (["--dataset", "mnist", "--k", "0"], "must be >= 1"),
        (["--dataset", "mnist", "--score", "likelihood"], "invalid choice"),
        (["--dataset", "mnist", "--normal-classes", "one"], "expected label values"),
        (["--dataset", "nosuchset"], "nosuchset"),
        (["--input", "/nonexistent/dir"], "not a folder"),
        (["--dataset", "mnist", "--limit", "5", "--normal-classes", "0,1,2,3,4,5,6,7,8,9"], "no anomalous"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, mnist_run, data_root, extra, needle):
    assert needle in one_line_error(capsys, ["anomaly", str(mnist_run), "--data-dir", str(data_root)] + extra)


def test_images_of_another_shape_are_refused(capsys, mnist_run, cifar_root):
    err = one_line_error(capsys, ["anomaly", str(mnist_run), "--data-dir", str(cifar_root), "--dataset", "cifar10"])
    assert "the run's model takes 1x28x28" in err


def test_a_corrupt_file_in_input_is_named(capsys, tmp_path, mnist_run):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "imgs" / "good.png")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    err = one_line_error(capsys, ["anomaly", str(mnist_run), "--input", str(tmp_path / "imgs")])
    assert "broken.png: cannot read as an image" in err


def test_normal_classes_need_labels(capsys, tmp_path, mnist_run):
    (tmp_path / "imgs").mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    err = one_line_error(
        capsys, ["anomaly", str(mnist_run), "--input", str(tmp_path / "imgs"), "--normal-classes", "0"]
    )
    assert "needs labelled images" in err

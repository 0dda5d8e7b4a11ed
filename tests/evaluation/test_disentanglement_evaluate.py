"""`vaelab evaluate --disentanglement`: the metrics of a tiny shapes run from the grid, the fallback on a split's
own images, the refusals (one line, exit 2), the saved file and the report's rows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import vaelab
from vaelab.cli import main
from vaelab.data import shapes
from vaelab.errors import VaelabError
from vaelab.evaluation.disentanglement.measure import KEYS, check_sizes, held_source, measure_disentanglement
from vaelab.report.evaluation import evaluation_rows

SMALL = ["--iwae-k", "0", "--no-frechet", "--limit", "64", "--no-progress"]


def test_shapes_run_from_the_grid(capsys, tmp_path, binary_run):
    run = shutil.copytree(binary_run, tmp_path / "run")
    assert main(["evaluate", str(run), *SMALL, "--disentanglement", "--disentanglement-n", "200", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(KEYS) <= set(r) and r["disentanglement_factors"] == list(shapes.FACTOR_NAMES)
    for key in ("mig", "factorvae_score", "dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert 0 <= r[key] <= 1, key
    assert len(r["mig_per_factor"]) == 5 and all(0 <= d < 4 for d in r["mig_best_dim"])
    assert len(r["dci_factor_of_dim"]) == 4 and r["disentanglement_n"] == 200 and r["disentanglement_n_test"] == 100
    assert "shapes grid" in r["disentanglement_settings"] and "200 codes" in r["disentanglement_settings"]
    assert (run / "evals" / "test-k0-seed0-n64-dis200.json").exists()  # beside, not over, one without
    assert json.loads((run / "eval.json").read_text()) == r
    names = [row[0] for row in evaluation_rows(r)]
    assert "MIG" in names and "FactorVAE score" in names and "DCI disentanglement" in names
    assert not any("another version" in row[3] for row in evaluation_rows(r))

    assert main(["evaluate", str(run), *SMALL, "--disentanglement", "--disentanglement-n", "200"]) == 0
    text = capsys.readouterr().out
    assert "MIG" in text and "FactorVAE score" in text and "disentanglement settings:" in text
    assert f"{r['mig']:.3f}" in text  # the same seed, the same numbers


def test_fallback_on_the_split_images(binary_run):
    """A set with factors but no grid to draw from: the split's own images, votes from those sharing a value."""
    data = shapes.load_shapes("test", 16)
    source = held_source(data, "test")
    assert source.sizes == shapes.FACTOR_SIZES and source.available == 2000
    model = vaelab.load(binary_run)
    r = measure_disentanglement(model, source, n=300, seed=1)
    assert (
        0 <= r["mig"] <= 1
        and 0 <= r["factorvae_score"] <= 1
        and "sharing the held value" in (r["disentanglement_settings"])
    )
    with pytest.raises(VaelabError, match="needs 10,000 \\+ 5,000 images .* has 2,000: use --disentanglement-n 1333"):
        check_sizes(source, 10_000, 5_000, 4)


def test_no_factors_is_one_line_exit_2(capsys, mnist_run, data_root):
    assert main(["evaluate", str(mnist_run), *SMALL, "--disentanglement", "--data-dir", str(data_root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "generative factors" in err and "mnist" in err


def test_too_few_images_is_one_line_exit_2(capsys, tmp_path):
    """A run on some classes of shapes is measured on those images of the split: 2 of 3 shapes, ~1,333 images."""
    run = tmp_path / "run"
    vaelab.train("mlp2", dataset="shapes", image_size=8, classes=(0, 1), latent_dim=2, epochs=1, limit=64,
                 val_size=0, batch_size=64, out=run, progress=False, log=lambda line: None)  # fmt: skip
    assert main(["evaluate", str(run), *SMALL, "--disentanglement"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--disentanglement-n" in err and "10,000 + 5,000" in err
    assert main(["evaluate", str(run), *SMALL, "--disentanglement", "--disentanglement-n", "2"]) == 2
    assert "disentanglement_n must be >= 4" in capsys.readouterr().err


def test_held_source_bins_continuous_factors_and_drops_constant_ones():
    import torch

    from vaelab.data.imageset import ImageSet

    rng = np.random.default_rng(0)
    factors = torch.tensor(
        np.stack([rng.random(500), rng.integers(3, size=500), np.zeros(500)], 1), dtype=torch.float32
    )
    data = ImageSet(torch.zeros(500, 1, 4, 4, dtype=torch.uint8), None, None, factors, ("a", "b", "c"))
    source = held_source(data, "train")
    assert source.names == ("a", "b") and source.sizes == (20, 3)
    assert "a binned into 20" in source.description and "c left out" in source.description

"""The levels diagnosis runs on a tiny hierarchy: one row per level, seeded, printed as a table."""

import math

import pytest

import vaelab
from benchmarks import levels


@pytest.fixture
def hvae_run(tmp_path, cifar_root, monkeypatch):
    monkeypatch.setenv("VAELAB_CACHE_DIR", str(tmp_path / "cache"))  # the classifier stays out of the user's cache
    run = vaelab.train(
        "cifar-hvae",
        data_dir=cifar_root,
        latent_dim=2,
        width=8,
        depth=1,
        resolutions=(8, 4, 1),
        groups_per_resolution=(1, 2, 1),
        out=tmp_path / "run",
        epochs=1,
        val_size=10,
        batch_size=10,
        progress=False,
        log=lambda line: None,
    )
    return run.path, cifar_root


def test_one_row_per_level_from_samples_to_reconstructions(hvae_run, capsys):
    run, data = hvae_run
    rows = levels.measure(str(run), n=10, seed=0, data_dir=str(data))
    assert [keep for keep, *_ in rows] == [0, 1, 3, 4]  # nothing, 1x1, down to 4x4, all (groups at 1, 4, 4, 8)
    assert rows[0][1] == "nothing: samples" and rows[1][1] == "groups 1-1, down to 1x1"
    assert rows[2][1] == "groups 1-3, down to 4x4" and rows[3][1] == "all 4 groups: reconstructions"
    assert all(math.isfinite(fd) and fd >= 0 and fitted is None for _, _, fd, fitted in rows)
    assert levels.measure(str(run), n=10, seed=0, data_dir=str(data)) == rows  # seeded
    fitted = levels.measure(str(run), n=5, seed=0, data_dir=str(data), expost_n=30)
    assert fitted[0][3] is None and fitted[1][3] > 0  # the first level: 2 dims fitted to 30 images
    assert fitted[2][3] is None and fitted[3][3] is None  # 66 and 194 dims: too few images
    assert levels.main([str(run), "--n", "10", "--expost-n", "0", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + len(rows) and out[-1].startswith("all 4 groups: reconstructions")
    assert float(out[-1].split()[-2]) == pytest.approx(rows[-1][2], abs=0.005) and out[-1].split()[-1] == "-"


def test_too_few_training_images_are_refused(hvae_run):
    run, data = hvae_run
    with pytest.raises(SystemExit, match="has 40 images: --n 30 needs 60"):
        levels.measure(str(run), n=30, seed=0, data_dir=str(data))

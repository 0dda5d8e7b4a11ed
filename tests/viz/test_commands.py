"""The pictures of the commands: `sample` draws what plots/samples.png shows, `reconstruct` labels its rows,
`anomaly --grid` shows the most and least anomalous images with their scores."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import vaelab
from vaelab.cli import main, use
from vaelab.viz import anomaly as anomaly_grid
from vaelab.viz import decoded
from vaelab.viz.grid import tile
from vaelab.viz.plots import plot_run

from clihelp import one_line_error

QUIET = dict(progress=False, log=lambda line: None)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
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


def _spy_blocks(monkeypatch, module) -> list:
    """The blocks of every `image_figure` that `module` draws."""
    seen = []
    real = module.image_figure

    def spy(blocks, **kwargs):
        seen.append((list(blocks), kwargs))
        return real(blocks, **kwargs)

    monkeypatch.setattr(module, "image_figure", spy)
    return seen


@pytest.mark.parametrize("seed", [0, 3])
def test_sample_shows_the_images_of_plots_samples_png(run, tmp_path, monkeypatch, seed):
    shown = _spy_blocks(monkeypatch, decoded)
    plot_run(run, only="samples", out=tmp_path, seed=seed, log=lambda line: None)
    assert main(["sample", str(run), "--seed", str(seed), "-o", str(tmp_path / "s.png")]) == 0
    blocks, kwargs = shown[0]
    assert f"(seed {seed})" in kwargs["title"]
    with Image.open(tmp_path / "s.png") as im:
        pixels = np.asarray(im)
    assert np.array_equal(pixels[::2, ::2], tile(blocks[0].images, ncol=8))  # the grid is upscaled 2x


def test_sample_temperature_and_n_go_through_the_same_draw(run, tmp_path):
    model = vaelab.load(run)
    a = decoded.prior_samples(model, 6, seed=1, temperature=0.5)
    assert a.shape == (6, 1, 16, 16) and a.equal(decoded.prior_samples(model, 6, seed=1, temperature=0.5))
    assert not a.equal(decoded.prior_samples(model, 6, seed=1))


def test_reconstruct_labels_its_rows(run, tmp_path, monkeypatch, capsys):
    shown = _spy_blocks(monkeypatch, use)
    out = tmp_path / "r.png"
    assert main(["reconstruct", str(run), "-n", "10", "-o", str(out)]) == 0
    blocks, kwargs = shown[0]
    assert [list(b.row_labels) for b in blocks] == [["original", "reconstruction"]] * 2  # 8 + 2 images
    assert "10 test images (seed 0) and their reconstructions" in kwargs["title"]
    assert blocks[1].images[2:8].eq(1).all() and blocks[1].images[10:].eq(1).all()  # a short group: white
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 8 * 16 * 2
    assert capsys.readouterr().out.strip() == str(out)


def test_anomaly_grid_shows_the_extremes_with_their_scores(run, tmp_path, monkeypatch):
    shown = _spy_blocks(monkeypatch, anomaly_grid)
    result = vaelab.anomaly_scores(run, dataset="shapes", limit=40, grid=tmp_path / "grid.png", progress=False)
    assert result.grid == tmp_path / "grid.png" and result.grid.is_file()
    (most, least), kwargs = shown[0]
    assert list(most.row_labels) == ["most anomalous"] and list(least.row_labels) == ["least anomalous"]
    ranked = result.scores.sort(descending=True).values.tolist()
    assert [c.split("\n")[0] for c in most.captions] == [f"{v:.1f}" for v in ranked[:8]]
    assert [c.split("\n")[0] for c in least.captions] == [f"{v:.1f}" for v in ranked[::-1][:8]]
    assert all("label" in c for c in most.captions)  # shapes are labelled
    assert "of 40 images" in kwargs["title"] and "-ELBO" in kwargs["title"]


def test_anomaly_command_writes_the_grid_and_says_so(run, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    assert main(["anomaly", str(run), "--dataset", "shapes", "--limit", "5", "--grid", str(grid), "--no-progress"]) == 0
    assert f"grid: {grid}" in capsys.readouterr().out
    with Image.open(grid) as im:
        assert im.format == "PNG"
    err = one_line_error(capsys, ["anomaly", str(run), "--dataset", "shapes", "-o", "-", "--grid", "-"])
    assert "cannot both write to standard output" in err


def test_an_unwritable_grid_is_refused_before_scoring(run, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    err = one_line_error(
        capsys, ["anomaly", str(run), "--dataset", "shapes", "--grid", str(tmp_path / "file" / "grid.png")]
    )
    assert "Not a directory" in err

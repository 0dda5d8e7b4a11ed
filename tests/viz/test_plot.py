"""`vaelab plot` / `plot_run`: every picture, grey and RGB, the grid maths, selection, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from vaelab.cli import main
from vaelab.training.rundir import RunDir
from vaelab.training.trainer import load_model
from vaelab.viz import charts
from vaelab.viz.context import PlotContext
from vaelab.viz.geometry import linear_grid, quantile_grid, rank_dims
from vaelab.viz.plots import PICTURES, plot_run

from clihelp import one_line_error

QUIET = dict(progress=False, log=lambda line: None)
SHAPES = dict(dataset="shapes", image_size=16, limit=64, val_size=32, batch_size=32, **QUIET)
ALL_FILES = [PICTURES[name].filename for name in PICTURES.names() if name != "levels"]  # levels: hierarchies
GRIDS = ["reconstructions.png", "samples.png", "manifold.png", "interpolation.png", "traversals.png"]


@pytest.fixture(scope="module")
def grey_run(tmp_path_factory):
    """Latent 2, two epochs: 16x16 grey shapes."""
    return vaelab.train("mlp2", out=tmp_path_factory.mktemp("grey") / "run", epochs=2, **SHAPES).path


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory):
    """Latent 5, one epoch."""
    return vaelab.train("mlp2", out=tmp_path_factory.mktemp("wide") / "run", epochs=1, latent_dim=5, **SHAPES).path


@pytest.fixture
def decoded(monkeypatch):
    """Every batch of latents the pictures decode, in order."""
    seen: list[torch.Tensor] = []
    real = PlotContext.decode

    def spy(self, z):
        seen.append(z.clone())
        return real(self, z)

    monkeypatch.setattr(PlotContext, "decode", spy)
    return seen


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def test_every_picture_of_a_grey_run(grey_run, tmp_path):
    out = tmp_path / "plots"
    paths = plot_run(grey_run, out=out, limit=100, log=lambda line: None)
    assert [p.name for p in paths] == ALL_FILES
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_FILES)  # no temp files left behind
    for name in ALL_FILES:
        if name.endswith(".png"):
            with Image.open(out / name) as im:
                assert im.format == "PNG" and im.mode in ("RGB", "RGBA") and min(im.size) >= 150, name
    for name in GRIDS:  # grey data stays grey: every pixel has R == G == B
        rgb = _rgb(out / name)
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all(), name
    # 16-pixel images are upscaled 4x: the 20 x 20 manifold is at least 20 * 64 pixels wide
    assert _rgb(out / "manifold.png").shape[1] >= 20 * 16 * 4
    assert _rgb(out / "samples.png").shape[1] >= 8 * 16 * 4


def test_levels_are_skipped_for_one_latent_group(grey_run, tmp_path):
    lines = []
    assert plot_run(grey_run, only="levels", out=tmp_path, log=lines.append) == []
    assert len(lines) == 1 and lines[0].startswith("skipped levels.png") and "one latent group" in lines[0]


def test_progress_gif_has_one_frame_per_epoch_and_holds_the_last(grey_run, tmp_path):
    plot_run(grey_run, only="progress", out=tmp_path, log=lambda line: None)
    with Image.open(tmp_path / "progress.gif") as gif:
        assert gif.n_frames == 3  # epoch 0 (untrained), 1 and 2
        durations = []
        for k in range(gif.n_frames):
            gif.seek(k)
            durations.append(gif.info["duration"])
    assert durations[-1] > durations[0]


def test_rgb_run_pictures_are_in_colour(cifar_root, tmp_path):
    run = vaelab.train(
        "mlp2",
        dataset="cifar10",
        data_dir=cifar_root,
        out=tmp_path / "run",
        limit=40,
        val_size=10,
        epochs=1,
        batch_size=20,
        latent_dim=3,
        **QUIET,
    ).path
    paths = plot_run(run, data_dir=cifar_root, log=lambda line: None)
    assert [p.name for p in paths] == ALL_FILES
    assert all(p.parent == run / "plots" for p in paths)
    for name in ["reconstructions.png", "interpolation.png"]:  # their test images are colour noise
        rgb = _rgb(run / "plots" / name)
        assert (np.abs(rgb[..., 0] - rgb[..., 1]) > 30).mean() > 0.01, name  # real colour, not grey
    with Image.open(run / "plots" / "progress.gif") as gif:
        assert gif.n_frames == 2


def test_manifold_on_gaussian_quantiles_grows_right_and_up(grey_run, tmp_path, decoded):
    plot_run(grey_run, only="manifold", out=tmp_path, limit=50)
    z = decoded[0].reshape(20, 20, 2)  # (row, column, dim)
    values = quantile_grid(20)
    assert torch.allclose(z[0, :, 0], values) and torch.allclose(z[-1, :, 0], values)  # z[0] along columns
    assert torch.allclose(z[:, 0, 1], values.flip(0))  # z[1] down the rows, largest at the top


def test_manifold_range_is_a_linear_grid(grey_run, tmp_path, decoded):
    plot_run(grey_run, only="manifold", out=tmp_path, limit=50, latent_range=2.5)
    z = decoded[0].reshape(20, 20, 2)
    assert torch.allclose(z[0, :, 0], linear_grid(20, 2.5))
    assert z[0, 0, 1] == 2.5 and z[-1, 0, 1] == -2.5


def test_wide_latent_manifold_uses_the_two_largest_kl_dims(wide_run, tmp_path, decoded):
    plot_run(wide_run, only="manifold", out=tmp_path, limit=50)
    z = decoded[0]
    varying = [d for d in range(5) if z[:, d].abs().max() > 0]
    ctx = PlotContext(run=RunDir(wide_run), model=load_model(wide_run), out=tmp_path, limit=50, seed=0)
    first, second = rank_dims(ctx.kl_per_dim)[:2]
    assert sorted(varying) == sorted([first, second])
    grid = z.reshape(20, 20, 5)
    assert torch.allclose(grid[0, :, first], quantile_grid(20))  # the larger-KL dim along the columns


def test_dims_choose_the_manifold_axes(wide_run, tmp_path, decoded):
    plot_run(wide_run, only="manifold", out=tmp_path, limit=50, dims="3,1")
    grid = decoded[0].reshape(20, 20, 5)
    assert torch.allclose(grid[0, :, 3], quantile_grid(20)) and torch.allclose(grid[:, 0, 1], quantile_grid(20).flip(0))
    assert grid[..., [0, 2, 4]].abs().max() == 0  # the other dims at 0


def test_latent_scatter_uses_pca_above_two_dims(grey_run, wide_run, tmp_path, monkeypatch):
    calls = []
    real = charts.pca_2d
    monkeypatch.setattr(charts, "pca_2d", lambda x: calls.append(x.shape) or real(x))
    plot_run(grey_run, only="latent", out=tmp_path / "a", limit=50)
    assert calls == []
    plot_run(wide_run, only="latent", out=tmp_path / "b", limit=50)
    assert calls == [(50, 5)]
    plot_run(wide_run, only="latent", out=tmp_path / "c", limit=50, dims=(0, 4))  # chosen dims: no PCA
    assert calls == [(50, 5)]
    assert (tmp_path / "b" / "latent.png").exists() and (tmp_path / "c" / "latent.png").exists()


def test_only_draws_the_named_pictures(grey_run, tmp_path):
    paths = plot_run(grey_run, only=["manifold", "loss.png", "error-hist"], out=tmp_path, limit=50)
    assert [p.name for p in paths] == ["loss.png", "manifold.png", "error_hist.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["error_hist.png", "loss.png", "manifold.png"]


def test_same_seed_same_pictures(grey_run, tmp_path):
    for name in ("a", "b", "c"):
        plot_run(grey_run, only="samples,reconstructions", out=tmp_path / name, limit=50, seed=1 if name == "c" else 0)
    for picture in ("samples.png", "reconstructions.png"):
        assert (tmp_path / "a" / picture).read_bytes() == (tmp_path / "b" / picture).read_bytes()
        assert (tmp_path / "a" / picture).read_bytes() != (tmp_path / "c" / picture).read_bytes()


def test_pictures_a_run_cannot_have_are_skipped(grey_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(grey_run, run)
    (run / "metrics.jsonl").unlink()
    (run / "steps.jsonl").unlink(missing_ok=True)  # with step losses, the loss plot draws those
    shutil.rmtree(run / "samples")
    lines = []
    assert plot_run(run, only="loss,progress,samples", limit=50, log=lines.append) == [run / "plots" / "samples.png"]
    assert len(lines) == 2 and lines[0].startswith("skipped loss.png") and lines[1].startswith("skipped progress.gif")


def test_cli_writes_into_the_run_and_prints_the_files(grey_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(grey_run, run)
    assert main(["plot", str(run), "--only", "loss,samples", "-n", "50", "--seed", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(run / "plots" / "loss.png"), str(run / "plots" / "samples.png")]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--only", "nope"], "unknown plot 'nope'"),
        (["--only", ","], "--only names no plot"),
        (["--dims", "0,9"], "out of range"),
        (["--dims", "1,1"], "two different"),
        (["--dims", "x,y"], "--dims wants two latent dims"),
        (["--dims", "0,1,2"], "--dims wants two latent dims"),
        (["--range", "-1"], "must be > 0"),
        (["-n", "0"], "must be >= 1"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(grey_run, tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    err = one_line_error(capsys, ["plot", str(grey_run), "-o", str(out), *extra])
    assert needle in err
    assert not out.exists()


def test_not_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert "no such run" in one_line_error(capsys, ["plot", str(tmp_path / "nothing")])
    assert "is not a vaelab run" in one_line_error(capsys, ["plot", str(tmp_path)])
    assert not (tmp_path / "plots").exists()

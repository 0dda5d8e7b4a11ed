"""The charts say what they show: a loss plot that stays readable with one absurd epoch, steps when the run
logged them, scatter markers visible at 20 and at 2,000 points, and the classes a run trained on."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

import vaelab
from vaelab.config import DataConfig, ModelConfig, RunConfig
from vaelab.training.rundir import RunDir
from vaelab.training.trainer import load_model
from vaelab.viz import charts, time_chart
from vaelab.viz.context import PlotContext
from vaelab.viz.plots import plot_run

QUIET = dict(progress=False, log=lambda line: None)
SHAPES = dict(dataset="shapes", image_size=16, limit=64, val_size=32, batch_size=32, **QUIET)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return vaelab.train("mlp2", out=tmp_path_factory.mktemp("run") / "run", epochs=1, **SHAPES).path


@pytest.fixture(scope="module")
def two_class_run(tmp_path_factory):
    """Trained on squares and ellipses only (labels 0 and 1 of the three shapes)."""
    return vaelab.train("mlp2", out=tmp_path_factory.mktemp("cls") / "run", epochs=1, classes=[0, 1], **SHAPES).path


@pytest.fixture
def figures(monkeypatch):
    """Every matplotlib figure the charts save, in order."""
    seen = []
    real = charts.save_figure
    monkeypatch.setattr(charts, "save_figure", lambda fig, path: seen.append(fig) or real(fig, path))
    return seen


def _epoch(e: int, train: float, val: float) -> dict:
    return {
        "epoch": e,
        "step": 10 * e,
        "skipped_steps": 0,
        "train_loss": train,
        "train_elbo": -train,
        "train_recon": train - 5,
        "train_kl": 5.0,
        "val_split": "val",
        "val_elbo": -val,
        "val_recon": val - 5,
        "val_kl": 5.0,
        "seconds": 1.0,
        "images_per_s": 100.0,
    }


def _context(run_path, tmp_path) -> PlotContext:
    return PlotContext(run=RunDir(run_path), model=load_model(run_path), out=tmp_path, limit=50, seed=0)


def _with_metrics(run, tmp_path, records, steps=None):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (copy / "steps.jsonl").unlink(missing_ok=True)
    if steps is not None:
        (copy / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    return copy


# keras-conv2's first epoch: a train -ELBO of 1.7e12, the others near 150
ABSURD = [_epoch(1, 1.7e12, 182.0)] + [_epoch(e, 150 + 40 / e, 152 + 30 / e) for e in range(2, 11)]


def test_robust_range_leaves_an_absurd_value_off_and_an_ordinary_descent_on():
    ordinary = [190.0, 170, 163, 160, 158, 157, 156, 155.5, 155, 154.6]
    assert charts.robust_range(ordinary) is None  # every value fits: matplotlib's own limits
    low, high = charts.robust_range(ordinary + [1.7e12])
    assert low < 154.6 and 190 < high < 220
    low, high = charts.robust_range(ordinary + [float("inf")])
    assert 190 < high < 220
    assert charts.robust_range([float("nan")]) is None and charts.robust_range(ordinary + [float("nan")]) is None
    assert charts.robust_range([543.0, 300, 200, 170, 160, 155, 152, 150]) is None  # an early descent stays
    low, high = charts.robust_range([543.0, 300, 200, 170, 160, 155, 152, 150, 4e5])
    assert 543 < high < 600


def test_an_absurd_epoch_is_drawn_at_the_edge_and_the_others_stay_readable(run, tmp_path):
    ctx = _context(_with_metrics(run, tmp_path, ABSURD), tmp_path)
    fig = charts.loss_figure(ctx)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert 182 < high < 220 and 150 < low + 10  # the y range is that of the ordinary values
    others = [150 + 40 / e for e in range(2, 11)]
    assert (max(others) - min(others)) / (high - low) > 0.3  # they fill a good part of the height
    markers = [line for line in ax.get_lines() if line.get_marker() == "^"]
    assert len(markers) == 1 and markers[0].get_ydata()[0] < high and markers[0].get_xdata()[0] == 1
    texts = [t.get_text() for t in ax.texts]
    assert "1.7e+12" in texts, texts
    assert "off the scale" in ax.get_title()
    plot_run(ctx.run.path, only="loss", out=tmp_path / "plots", log=lambda line: None)
    assert (tmp_path / "plots" / "loss.png").is_file()


def test_an_ordinary_loss_plot_has_no_off_scale_marks(run, tmp_path):
    records = [_epoch(e, 150 + 40 / e, 152 + 30 / e) for e in range(1, 6)]
    ax = charts.loss_figure(_context(_with_metrics(run, tmp_path, records), tmp_path)).axes[0]
    assert not [line for line in ax.get_lines() if line.get_marker() in ("^", "v")]
    assert "off the scale" not in ax.get_title() and ax.get_xlabel() == "epoch"


def test_steps_are_drawn_when_the_run_logged_them(run, tmp_path):
    if not hasattr(RunDir, "read_steps"):
        pytest.skip("this RunDir cannot read steps.jsonl yet")
    steps = [
        {
            "step": s,
            "epoch": (s - 1) // 10 + 1,
            "loss": 160.0 - s / 10,
            "recon": 155.0 - s / 10,
            "kl": 5.0,
            "images_per_s": 100.0,
        }
        for s in range(5, 51, 5)
    ]
    records = [_epoch(e, 150 + 40 / e, 152 + 30 / e) for e in range(1, 6)]
    ax = charts.loss_figure(_context(_with_metrics(run, tmp_path, records, steps), tmp_path)).axes[0]
    assert ax.get_xlabel() == "training step"
    line = next(line for line in ax.get_lines() if "mean of each 5 steps" in line.get_label())
    assert list(line.get_xdata()) == [s["step"] for s in steps]
    assert np.allclose(line.get_ydata(), [s["recon"] + s["kl"] for s in steps])  # the -ELBO, KL before beta
    epoch_means = next(line for line in ax.get_lines() if line.get_label().startswith("train −ELBO, epoch mean"))
    assert list(epoch_means.get_xdata()) == [10, 20, 30, 40, 50]  # at each epoch's last step


def test_steps_alone_are_drawn_before_the_first_epoch_ends(run, tmp_path):
    if not hasattr(RunDir, "read_steps"):
        pytest.skip("this RunDir cannot read steps.jsonl yet")
    steps = [{"step": s, "epoch": 1, "loss": 160.0, "recon": 150.0, "kl": 4.0, "images_per_s": 1.0} for s in (50, 100)]
    ax = charts.loss_figure(_context(_with_metrics(run, tmp_path, [], steps), tmp_path)).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["train −ELBO, mean of each 50 steps (last 154.00)"]
    (tmp_path / "run" / "steps.jsonl").unlink()
    with pytest.raises(charts.Skip, match="no finished epoch"):
        charts.loss_figure(_context(tmp_path / "run", tmp_path))


def test_marker_size_follows_the_number_of_points(run, tmp_path, figures):
    big, big_alpha = charts.marker_style(2000)
    small, small_alpha = charts.marker_style(20)
    assert small >= 30 and 5 <= big <= 12 and small_alpha > big_alpha >= 0.6
    for n in (20, 2000):
        plot_run(run, only="latent", out=tmp_path / str(n), limit=n, log=lambda line: None)
    sizes = [{float(s) for c in fig.axes[0].collections for s in c.get_sizes()} for fig in figures]
    assert sizes == [{small}, {big}]


def test_the_trained_classes_are_marked_and_the_others_faded(two_class_run, tmp_path, figures):
    plot_run(two_class_run, only="latent,error_hist", out=tmp_path, limit=400, log=lambda line: None)
    latent, hist = figures
    ax = latent.axes[0]
    assert "trained on classes 0 (square), 1 (ellipse) only" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["square (trained)", "ellipse (trained)", "heart (not trained)"]
    faded, trained = ax.collections  # the untrained classes first, beneath
    assert faded.get_alpha() <= 0.3 < trained.get_alpha()
    assert len(faded.get_offsets()) + len(trained.get_offsets()) == 400
    labels = [t.get_text() for t in hist.axes[0].get_legend().get_texts()]
    assert any(t.startswith("trained classes") for t in labels) and any(t.startswith("other classes") for t in labels)


def test_a_run_on_every_class_has_plain_labels(run, tmp_path, figures):
    plot_run(run, only="latent", out=tmp_path, limit=100, log=lambda line: None)
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["square", "ellipse", "heart"]
    assert "trained on" not in ax.get_title()


def _timed(seconds: float, val_elbo: float, train_elbo: float, split: str = "val") -> dict:
    return {"seconds": seconds, "val_elbo": val_elbo, "train_elbo": train_elbo, "val_split": split}


def _units(likelihood: str, binarize: str = "none", shape=(3, 32, 32)) -> time_chart.Units:
    config = RunConfig(data=DataConfig(name="cifar10", binarize=binarize), model=ModelConfig(likelihood=likelihood))
    return time_chart.likelihood_units(config, shape)


def test_the_time_curves_are_in_bits_per_dim_for_8_bit_likelihoods_and_in_nats_otherwise():
    four_bits = 3072 * math.log(2) * 4  # 4 bits/dim on 3x32x32 images, in nats per image
    records = [_timed(60.0, -2 * four_bits, -3 * four_bits), _timed(120.0, -four_bits, -0.5 * four_bits, "test")]
    for likelihood, binarize in [
        ("discretized-logistic", "none"),
        ("discretized-logistic-mixture", "none"),
    ]:
        units = _units(likelihood, binarize)
        assert units.name == "bits/dim", (likelihood, binarize)
        series = time_chart.time_series(records, units)
        assert series.val.tolist() == pytest.approx([8.0, 4.0], rel=1e-12)
        assert series.train.tolist() == pytest.approx([12.0, 2.0], rel=1e-12)
    for likelihood, binarize in [
        ("gaussian", "none"),
        ("gaussian-learned", "none"),
        ("bernoulli", "none"),
        ("bernoulli", "static"),  # binarised MNIST: nats, as its papers report
        ("bernoulli", "dynamic"),
    ]:
        units = _units(likelihood, binarize)
        assert units == time_chart.NATS, (likelihood, binarize)
        assert time_chart.time_series(records, units).val.tolist() == pytest.approx([2 * four_bits, four_bits])
    grey = _units("discretized-logistic", shape=(1, 28, 28))  # D = C·H·W
    assert time_chart.time_series(records, grey).val[1] == pytest.approx(four_bits / (784 * math.log(2)))
    series = time_chart.time_series(records, time_chart.NATS)
    assert series.minutes.tolist() == pytest.approx([1.0, 3.0])  # cumulative: 60 s, then 60 + 120 s
    assert series.val_split == "test"  # the last record's


def test_the_time_plot_is_written_from_the_metrics_with_its_last_value_marked(run, tmp_path, monkeypatch):
    seen = []
    real = time_chart.save_figure
    monkeypatch.setattr(time_chart, "save_figure", lambda fig, path: seen.append(fig) or real(fig, path))
    records = [_epoch(e, 150 + 40 / e, 152 + 30 / e) | {"seconds": 60.0 * e} for e in range(1, 5)]
    copy = _with_metrics(run, tmp_path, records)
    written = plot_run(copy, only="time", out=tmp_path / "plots", log=lambda line: None)
    assert written == [tmp_path / "plots" / "time.png"] and written[0].stat().st_size > 0
    ax = seen[0].axes[0]
    assert ax.get_xlabel() == "training time (min, validation not counted)"
    assert "nats per image" in ax.get_ylabel()  # mlp2: a Bernoulli on grey levels, not a code length
    assert ax.get_title().startswith("mlp2 on shapes")
    train, val = ax.get_lines()
    assert val.get_label() == "val −ELBO after the epoch" and train.get_label() == "train −ELBO, epoch mean"
    assert list(val.get_xdata()) == pytest.approx([1, 3, 6, 10])  # 1 + 2 + 3 + 4 minutes
    assert list(val.get_ydata()) == pytest.approx([152 + 30 / e for e in range(1, 5)])
    assert list(train.get_ydata()) == pytest.approx([150 + 40 / e for e in range(1, 5)])
    assert [t.get_text() for t in ax.texts] == [f"{152 + 30 / 4:.2f} nats per image at 10 min"]


def test_the_time_plot_is_skipped_without_metrics_and_overlays_runs_in_one_unit(run, tmp_path):
    lines = []
    assert plot_run(_with_metrics(run, tmp_path, []), only="time", out=tmp_path / "p", log=lines.append) == []
    assert len(lines) == 1 and lines[0].startswith("skipped time.png")
    bits, nats = _units("discretized-logistic"), time_chart.NATS
    a = [_timed(20.0, -9000.0, -9500.0), _timed(25.0, -8900.0, -9000.0)]
    b = [_timed(6000.0, -8800.0, -8700.0)]
    ax = time_chart.time_figure([("a", a, bits), ("b", b, bits)], title="two runs").axes[0]
    assert [line.get_label() for line in ax.get_lines()] == [
        "a: train −ELBO, epoch mean",
        "a: val −ELBO after the epoch",
        "b: train −ELBO, epoch mean",
        "b: val −ELBO after the epoch",
    ]
    assert [t.get_text() for t in ax.texts] == [
        f"{8900 / bits.nats:.3f} bits/dim at 45 s",
        f"{8800 / bits.nats:.3f} bits/dim at 1.7 h",
    ]
    with pytest.raises(ValueError, match="different units"):
        time_chart.time_figure([("a", a, bits), ("b", b, nats)], title="mixed")


def test_the_time_curves_zoom_on_the_later_training_time():
    """A long run's first epochs (300 nats) would flatten the later gains (95 to 90): the y range fits the values
    after the first tenth of the time, the early ones drawn at the edge; a short run keeps the full range."""
    later = [-100.0, -97.0, -95.0, -94.0, -93.0, -92.5, -92.0, -91.0, -90.5, -90.0]  # minutes 2 to 11
    records = [_timed(60.0, -300.0, -320.0)] + [_timed(60.0, v, v - 1) for v in later]
    low, high = time_chart.time_figure([("a", records, time_chart.NATS)], title="long").axes[0].get_ylim()
    assert 88.0 < low < 90.0 and 101.0 < high < 103.0
    short = time_chart.time_figure([("a", records[:3], time_chart.NATS)], title="short").axes[0].get_ylim()
    assert short[1] > 320.0

"""--tensorboard: RUN/tensorboard holds the numbers of steps.jsonl and metrics.jsonl, images, and survives resumes."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest

import vaelab
from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.training import loop
from vaelab.training.checkpoint import load_checkpoint
from vaelab.training.tensorboard import TensorBoard, _epoch_scalars

from clihelp import one_line_error

HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
needs_tensorboard = pytest.mark.skipif(not HAVE_TENSORBOARD, reason="the tensorboard extra is not installed")

TINY = dict(
    preset="mlp2",
    dataset="shapes",
    image_size=16,
    limit=96,  # 6 steps of 16 images per epoch
    val_size=32,
    batch_size=16,
    sample_grid=4,
    device="cpu",
    threads=1,
    progress=False,
)
TINY_ARGS = [
    *("--preset", "mlp2", "--dataset", "shapes", "--image-size", "16", "--limit", "96", "--val-size", "32"),
    *("--batch-size", "16", "--device", "cpu", "--threads", "1", "--no-progress"),
]
STEP_TAGS = {"loss", "recon", "kl", "beta", "lr", "grad_norm", "skipped_steps", "images_per_s"}
EPOCH_TAGS = {"train_loss", "train_elbo", "train_recon", "train_kl", "train_beta", "skipped_steps", "seconds"}
VAL_TAGS = {"elbo", "recon", "kl"}


@pytest.fixture(autouse=True)
def short_windows(monkeypatch):
    monkeypatch.setattr(loop, "LOG_EVERY", 2)  # 3 steps.jsonl lines per epoch of 6 steps


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def _points(events, tag) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


@needs_tensorboard
def test_a_run_logs_the_steps_the_epochs_and_their_pictures(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--epochs", "2", "--tensorboard", "--out", str(run)]) == 0
    steps, metrics = _jsonl(run / "steps.jsonl"), _jsonl(run / "metrics.jsonl")
    assert len(steps) == 6 and len(metrics) == 2
    events = _events(run)
    tags = set(events.Tags()["scalars"])
    assert {f"train/{t}" for t in STEP_TAGS} | {f"epoch/{t}" for t in EPOCH_TAGS} | {"epoch/images_per_s"} <= tags
    assert {f"val/{t}" for t in VAL_TAGS} <= tags
    loss = _points(events, "train/loss")
    assert [s for s, _ in loss] == [line["step"] for line in steps]
    assert [v for _, v in loss] == pytest.approx([line["loss"] for line in steps], abs=1e-5)
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([1e-3] * 6)
    assert all(math.isfinite(e.value) and e.value > 0 for e in events.Scalars("train/grad_norm"))
    assert _points(events, "val/elbo") == [(r["step"], pytest.approx(r["val_elbo"], abs=1e-5)) for r in metrics]
    epoch_ends = [r["step"] for r in metrics]
    for tag in ("images/samples", "images/reconstructions"):
        assert [e.step for e in events.Images(tag)] == epoch_ends
    recon = events.Images("images/reconstructions")[0]
    assert (recon.width, recon.height) == (8 * 16, 2 * 16)  # 8 validation images over their reconstructions


@needs_tensorboard
def test_a_resume_appends_to_the_folder_and_keeps_the_step_axis(tmp_path, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    vaelab.train(out=run, epochs=1, tensorboard=True, log=lambda line: None, **TINY)
    assert load_checkpoint(run).step == 6
    with SummaryWriter(str(run / "tensorboard")) as stray:  # what a process killed after its checkpoint wrote
        stray.add_scalar("train/loss", 999.0, 8)

    vaelab.resume(run, epochs=2, progress=False, log=lambda line: None)  # no flag: the run's config keeps it on
    assert load_checkpoint(run).config.train.tensorboard
    assert [p.parent for p in run.glob("**/events.out.tfevents.*")] == [run / "tensorboard"] * 3
    steps = _jsonl(run / "steps.jsonl")
    loss = _points(_events(run), "train/loss")
    assert [s for s, _ in loss] == [line["step"] for line in steps] == [2, 4, 6, 8, 10, 12]  # the stray one dropped
    assert [v for _, v in loss] == pytest.approx([line["loss"] for line in steps], abs=1e-5)
    assert [s for s, _ in _points(_events(run), "val/elbo")] == [6, 12]

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # the package gone: a resume that needs it is refused
    with pytest.raises(VaelabError, match=r"pip install 'vaelab\[tensorboard\]'"):
        vaelab.resume(run, epochs=3, progress=False, log=lambda line: None)
    assert load_checkpoint(run).epoch == 2
    vaelab.resume(run, epochs=3, tensorboard=False, progress=False, log=lambda line: None)  # --no-tensorboard
    assert load_checkpoint(run).epoch == 3 and not load_checkpoint(run).config.train.tensorboard
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 3


def test_without_the_package_the_flag_is_refused_before_a_run_folder_exists(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` raises ImportError
    run = tmp_path / "run"
    err = one_line_error(capsys, ["train", *TINY_ARGS, "--tensorboard", "--out", str(run)])
    assert err == "vaelab: error: --tensorboard needs the tensorboard package: pip install 'vaelab[tensorboard]'"
    assert not run.exists()


def test_epoch_records_become_val_and_epoch_tags_with_a_hierarchys_groups():
    record = {"epoch": 3, "step": 30, "skipped_steps": 1, "train_loss": 5.0, "val_split": "val", "val_elbo": -4.0}
    record |= {"val_kl_groups": [2.0, 0.5], "seconds": 1.5}
    assert _epoch_scalars(record) == [
        ("epoch/skipped_steps", 1),
        ("epoch/train_loss", 5.0),
        ("val/elbo", -4.0),
        ("val/kl_1", 2.0),
        ("val/kl_2", 0.5),
        ("epoch/seconds", 1.5),
    ]


@needs_tensorboard
def test_an_objectives_extra_terms_become_train_tags(tmp_path):
    line = {"step": 2, "epoch": 1, "loss": 5.0, "recon": 4.0, "kl": 1.0, "mi": 0.25, "tc": 0.5, "dwkl": 0.25}
    with TensorBoard(tmp_path / "tensorboard") as board:
        board.steps({**line, "images_per_s": 9.0})
    events = _events(tmp_path)
    assert [_points(events, f"train/{name}") for name in ("mi", "tc", "dwkl")] == [[(2, 0.25)], [(2, 0.5)], [(2, 0.25)]]
    assert _epoch_scalars({"epoch": 1, "step": 6, "train_kl": 1.0, "train_mi": 0.25, "train_tc": 0.5}) == [
        ("epoch/train_kl", 1.0),
        ("epoch/train_mi", 0.25),
        ("epoch/train_tc", 0.5),
    ]

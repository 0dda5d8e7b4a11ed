"""A hierarchical VAE (`hvae`) trains, validates per group, resumes bit for bit, evaluates and draws its
pictures through the same loop, files and commands as a single-latent one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch
from test_distributed import ARGS as DDP_ARGS
from test_distributed import _run as ddp_run
from test_schedule_ema import TINY as SCHEDULE_TINY
from test_schedule_ema import _assert_same_run

import vaelab
from vaelab.errors import TrainingStopped
from vaelab.training.checkpoint import load_checkpoint

from clihelp import one_line_error

HVAE = dict(
    encoder="hvae",
    decoder="hvae",
    latent_dim=2,
    width=8,
    depth=1,
    resolutions=(8, 4),
    groups=2,
)
TINY = {**SCHEDULE_TINY, "sample_grid": 4, **HVAE}  # 6 steps per epoch


def test_an_hvae_run_trains_and_reports_each_groups_kl(tmp_path):
    lines = []
    vaelab.train(out=tmp_path / "run", epochs=2, **{**TINY, "log": lines.append})
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(len(r["val_kl_groups"]) == 4 for r in records)  # 2 resolutions x 2 groups
    assert records[-1]["val_kl"] == pytest.approx(sum(records[-1]["val_kl_groups"]), rel=1e-5)
    assert any("in 4 groups, the least" in line for line in lines)
    assert (tmp_path / "run" / "samples" / "epoch_0002.png").is_file()
    model = vaelab.load(tmp_path / "run")
    assert model.group_shapes == ((2, 4, 4), (2, 4, 4), (2, 8, 8), (2, 8, 8))
    assert vaelab.load(tmp_path / "run").config.preset == "custom-hvae"


def test_a_stop_mid_epoch_then_resume_is_bit_identical_for_an_hvae(tmp_path, monkeypatch):
    settings = dict(epochs=2, ema=0.9, lr_schedule="cosine", warmup_steps=2, kl_warmup_steps=4, free_bits=0.1)
    vaelab.train(out=tmp_path / "straight", **settings, **TINY)

    from vaelab.training import step as step_module

    real, calls = step_module.train_step, {"n": 0}

    def stopping(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            signal.raise_signal(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr("vaelab.training.loop.train_step", stopping)
    with pytest.raises(TrainingStopped):
        vaelab.train(out=tmp_path / "stopped", **settings, **TINY)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "stopped").step == 8
    vaelab.resume(tmp_path / "stopped", progress=False, log=lambda line: None)
    _assert_same_run(tmp_path / "straight", tmp_path / "stopped")


def test_evaluate_plot_sample_and_reconstruct_an_hvae_run(tmp_path):
    run = tmp_path / "run"
    vaelab.train(out=run, epochs=1, **TINY)
    model = vaelab.load(run)
    result = vaelab.evaluate(run, iwae_k=3, frechet=False, progress=False)
    assert len(result["kl_per_group"]) == 4 and result["group_dims"] == [32, 32, 128, 128]
    assert result["latent_dim"] == 320 and len(result["kl_per_dim"]) == 320
    assert sum(result["active_units_per_group"]) == result["active_units"]
    assert result["kl"] == pytest.approx(sum(result["kl_per_group"]), rel=1e-5)
    assert result["nll_iwae"] is not None and result["nll_iwae"] <= -result["elbo"] + 5
    cli = [sys.executable, "-m", "vaelab"]
    for args in (
        ["plot", str(run)],
        ["sample", str(run), "-n", "4", "--temperature", "0.6", "-o", str(tmp_path / "s.png")],
        ["reconstruct", str(run), "-n", "4", "-o", str(tmp_path / "r.png")],
    ):
        done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (args, done.stderr)
    plots = {p.name for p in (run / "plots").iterdir()}
    assert {"reconstructions.png", "samples.png", "latent.png", "levels.png"} <= plots
    with torch.no_grad():
        x = torch.zeros(2, 1, 16, 16, dtype=torch.uint8)
        assert model.reconstruct(x).shape == (2, 1, 16, 16)
    for score in ("elbo", "iwae"):
        scores = vaelab.anomaly_scores(run, dataset="shapes", limit=8, score=score, k=2, progress=False).scores
        assert scores.shape == (8,) and torch.isfinite(scores).all()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--resolutions", "8,3"], "cannot reach a 3x3 feature map"),
        (["--latent-dim", "64"], "cannot be wider"),
        (["--encoder", "cvae2"], "needs its bottom-up half"),
        (["--resolutions", "8,4", "--groups-per-resolution", "1,2,3"], "gives 3 counts (1, 2, 3) for the 2"),
        (["--resolutions", "8,4", "--groups-per-resolution", "2,0"], "gives the lowest resolution (4) no latent"),
        (["--groups-per-resolution", "1,-1"], "group counts must be >= 0, got '1,-1'"),
    ],
)
def test_an_hvae_that_cannot_build_is_refused_before_a_run_directory(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    args = ["train", "--dataset", "shapes", "--image-size", "16", "--encoder", "hvae", "--decoder", "hvae"]
    args += ["--width", "8", "--latent-dim", "2", *flags, "--out", str(out), "--no-progress"]
    assert message in one_line_error(capsys, args)
    assert not out.exists()


@pytest.mark.slow
def test_two_gloo_ranks_train_an_hvae_like_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ["--epochs", "1", "--encoder", "hvae", "--decoder", "hvae", "--latent-dim", "2"]
    extra += ["--width", "8", "--depth", "1", "--resolutions", "16,8", "--groups", "2", "--ema", "0.9"]
    for run, ranks in ((one, 0), (two, 2)):
        done = ddp_run("-m", "vaelab", "train", *DDP_ARGS, *extra, "--out", str(run), ranks=ranks)
        assert done.returncode == 0, done.stderr
    a, b = load_checkpoint(one), load_checkpoint(two)
    for mine, theirs in ((a.model_state, b.model_state), (a.ema_state, b.ema_state)):
        for k in mine:
            torch.testing.assert_close(theirs[k], mine[k], rtol=1e-4, atol=1e-5, msg=k)
    ma, mb = (json.loads((r / "metrics.jsonl").read_text()) for r in (one, two))
    assert mb["val_kl_groups"] == pytest.approx(ma["val_kl_groups"], rel=1e-4)
    assert mb["val_elbo"] == pytest.approx(ma["val_elbo"], rel=1e-5)

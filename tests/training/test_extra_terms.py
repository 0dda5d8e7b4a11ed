"""An objective's extra per-example terms (β-TCVAE's mi, tc, dwkl) in steps.jsonl, metrics.jsonl and the
checkpoint's running sums: they add up to the KL, other objectives' lines keep their keys, and a checkpoint
from before them resumes."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import vaelab
from vaelab.errors import TrainingStopped, VaelabError
from vaelab.training import loop
from vaelab.training.checkpoint import Progress, load_checkpoint
from vaelab.training.runfiles import read_metrics, read_steps

TINY = dict(
    preset="cvae2",  # its KL is the single-sample one, so β-TCVAE's mi + tc + dwkl is it exactly
    dataset="shapes",
    image_size=16,
    limit=96,  # 6 steps of 16 images per epoch
    val_size=32,
    batch_size=16,
    device="cpu",
    precision="fp32",
    sample_grid=0,
    progress=False,
    log=lambda line: None,
)
BTCVAE = dict(objective="btcvae", tc_weight=6.0)
EXTRA = ("mi", "tc", "dwkl")
STEPS_KEYS = ["step", "epoch", "loss", "recon", "kl", "beta", "images_per_s"]  # as vaelab always wrote them
METRICS_KEYS = [
    *("epoch", "step", "skipped_steps", "train_loss", "train_elbo", "train_recon", "train_kl", "train_beta"),
    *("val_split", "val_elbo", "val_recon", "val_kl", "seconds", "images_per_s"),
]
TIMING = {"seconds", "images_per_s"}


@pytest.fixture(autouse=True)
def short_windows(monkeypatch):
    monkeypatch.setattr(loop, "LOG_EVERY", 2)  # 3 steps.jsonl lines per epoch of 6 steps


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _stop_once_at(monkeypatch, step_no: int) -> None:
    """SIGTERM to this process during the given (1-based) training step; later steps run as usual."""
    real, calls = loop.train_step, {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step_no:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", wrapped)


def test_btcvae_logs_mi_tc_and_dwkl_that_add_up_to_the_kl(tmp_path):
    run = tmp_path / "run"
    vaelab.train(out=run, epochs=2, **BTCVAE, **TINY)
    steps, metrics = _jsonl(run / "steps.jsonl"), _jsonl(run / "metrics.jsonl")
    assert len(steps) == 6 and len(metrics) == 2
    for line in steps:
        assert list(line) == [*STEPS_KEYS[:5], *EXTRA, *STEPS_KEYS[5:]]
        assert line["mi"] + line["tc"] + line["dwkl"] == pytest.approx(line["kl"], rel=1e-4, abs=1e-4)
        assert line["recon"] + line["mi"] + 6 * line["tc"] + line["dwkl"] == pytest.approx(line["loss"], rel=1e-4)
    for epoch, record in enumerate(metrics, 1):
        assert list(record) == [*METRICS_KEYS[:7], "train_mi", "train_tc", "train_dwkl", *METRICS_KEYS[7:]]
        parts = [record[f"train_{name}"] for name in EXTRA]
        assert sum(parts) == pytest.approx(record["train_kl"], rel=1e-4, abs=1e-4)
        windows = [line for line in steps if line["epoch"] == epoch]  # 3 windows of 32 images each
        for name, value in zip(EXTRA, parts, strict=True):
            assert value == pytest.approx(sum(line[name] for line in windows) / 3, rel=1e-6)
    assert read_steps(run / "steps.jsonl")[1] == [] and read_metrics(run / "metrics.jsonl")[1] == []
    assert load_checkpoint(run).progress.sums.shape == (7,)


def test_an_elbo_run_logs_the_keys_it_always_did(tmp_path):
    run = tmp_path / "run"
    vaelab.train(out=run, epochs=1, **TINY)
    assert [list(line) for line in _jsonl(run / "steps.jsonl")] == [STEPS_KEYS] * 3
    assert [list(record) for record in _jsonl(run / "metrics.jsonl")] == [METRICS_KEYS]
    assert load_checkpoint(run).progress.sums.shape == (4,)


def test_a_checkpoint_from_before_the_extra_terms_resumes_with_them_unknown_for_its_epoch(tmp_path, monkeypatch):
    vaelab.train(out=tmp_path / "straight", epochs=2, **BTCVAE, **TINY)
    _stop_once_at(monkeypatch, 4)
    with pytest.raises(TrainingStopped):
        vaelab.train(out=tmp_path / "stopped", epochs=2, **BTCVAE, **TINY)
    path = tmp_path / "stopped" / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    assert tensors["progress.sums"].shape == (7,)
    tensors["progress.sums"] = tensors["progress.sums"][:4].clone()  # loss, elbo, recon, kl: an older vaelab's
    save_file(tensors, str(path), metadata=metadata)

    vaelab.resume(tmp_path / "stopped", progress=False, log=lambda line: None)
    straight, stopped = (
        [{k: v for k, v in record.items() if k not in TIMING} for record in _jsonl(tmp_path / run / "metrics.jsonl")]
        for run in ("straight", "stopped")
    )
    unknown = {f"train_{name}" for name in EXTRA}
    assert all(math.isnan(stopped[0][key]) for key in unknown)  # epoch 1 lacks its first 3 steps' mi, tc, dwkl
    assert {k: v for k, v in stopped[0].items() if k not in unknown} == {
        k: v for k, v in straight[0].items() if k not in unknown
    }
    assert stopped[1] == straight[1]  # epoch 2 is whole again
    lines = _jsonl(tmp_path / "stopped" / "steps.jsonl")
    unknown_windows = [all(math.isnan(line[name]) for name in EXTRA) for line in lines]
    assert unknown_windows == [False, False, True, False, False, False]  # epoch 1's window after the resume


def test_sums_from_before_the_extra_terms_are_unknown_until_the_epoch_ends():
    names = loop.TERMS + EXTRA
    old = Progress(batch=2, images=32, sums=torch.tensor([1.0, -1.0, 0.5, 0.5], dtype=torch.float64))
    sums = loop._resumed_sums(old, names)
    assert sums[:4].tolist() == [1.0, -1.0, 0.5, 0.5] and sums[4:].isnan().all()
    assert loop._resumed_sums(Progress(), names).tolist() == [0.0] * 7  # an epoch's start: nothing is missing
    whole = loop._resumed_sums(Progress(images=16, sums=torch.arange(7, dtype=torch.float64)), names)
    assert whole.tolist() == list(range(7))
    with pytest.raises(VaelabError, match="running sums of 7 terms, more than this objective's 4"):
        loop._resumed_sums(Progress(images=16, sums=torch.zeros(7, dtype=torch.float64)), loop.TERMS)

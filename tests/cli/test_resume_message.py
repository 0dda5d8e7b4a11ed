"""The resume message says where in which epoch a run continues: "batch 5 of 6 in epoch 1 of 2"."""

from __future__ import annotations

import os
import signal

import pytest

import vaelab
from vaelab.errors import TrainingStopped

TINY = dict(
    preset="mlp2", dataset="shapes", image_size=16, limit=96, val_size=32, batch_size=16, device="cpu", progress=False
)


def _stop_during_step(monkeypatch, step_no: int) -> None:
    from vaelab.training import step as step_module

    real = step_module.train_step
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step_no:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr("vaelab.training.loop.train_step", wrapped)


def test_a_mid_epoch_resume_names_the_batch_of_the_epoch(tmp_path, monkeypatch):
    _stop_during_step(monkeypatch, 4)
    with pytest.raises(TrainingStopped):
        vaelab.train(out=tmp_path / "run", epochs=2, log=lambda line: None, **TINY)
    monkeypatch.undo()
    lines = []
    vaelab.resume(tmp_path / "run", progress=False, log=lines.append)
    assert lines[0].startswith(f"resuming {tmp_path / 'run'} at batch 5 of 6 in epoch 1 of 2 ("), lines[0]


def test_a_resume_at_an_epoch_boundary_names_the_epoch(tmp_path):
    vaelab.train(out=tmp_path / "run", epochs=1, log=lambda line: None, **TINY)
    lines = []
    vaelab.resume(tmp_path / "run", epochs=2, progress=False, log=lines.append)
    assert lines[0].startswith(f"resuming {tmp_path / 'run'} at epoch 2 of 2 ("), lines[0]

"""--time-limit: a run stops after the first epoch that ends past its minutes of training, resumes included.

The loop's clock is a fake one that moves only during training steps (STEP_SECONDS each), so an epoch of
the tiny run takes exactly 0.5 min of training time and validation none, whatever the machine's load.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import vaelab
from vaelab.api import resolve_config
from vaelab.cli import main
from vaelab.errors import TrainingStopped, VaelabError
from vaelab.training import loop
from vaelab.training.checkpoint import load_checkpoint

from clihelp import one_line_error

TINY = dict(
    preset="mlp2",
    dataset="shapes",
    image_size=16,
    limit=96,  # 6 steps of 16 images per epoch
    val_size=32,
    batch_size=16,
    sample_grid=4,
    device="cpu",
    progress=False,
)
HERE = Path(__file__).parent
STEP_SECONDS = 5.0  # 6 steps: 30 s = 0.5 min per epoch
TINY_ARGS = [
    "--preset",
    "mlp2",
    "--dataset",
    "shapes",
    "--image-size",
    "16",
    "--limit",
    "96",
    "--val-size",
    "32",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--no-progress",
]


class FakeClock:
    """`time.perf_counter` as the loop sees it: moves STEP_SECONDS per training step, and never otherwise.
    With `signal_at`, SIGTERM arrives during that (1-based) step, as Ctrl-C or a scheduler would send it."""

    def __init__(self) -> None:
        self.now, self.steps, self.signal_at = 1000.0, 0, None

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake, real_step = FakeClock(), loop.train_step

    def step(*args, **kwargs):
        fake.steps += 1
        fake.now += STEP_SECONDS
        if fake.steps == fake.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", step)
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _stop_line(run, minutes: str, epoch: int, epochs: int, spent: str) -> str:
    return (
        f"time limit: {minutes} min of training reached after epoch {epoch} of {epochs} ({spent} min); "
        f"continue with: vaelab train --resume {run} --time-limit M (M > {minutes})"
    )


@pytest.mark.parametrize("minutes, last_epoch", [(0.1, 1), (1.0, 2), (1.2, 3)])
def test_the_run_stops_after_the_first_epoch_that_ends_past_the_limit(tmp_path, clock, minutes, last_epoch):
    run, lines = tmp_path / "run", []
    vaelab.train(out=run, epochs=6, time_limit=minutes, log=lines.append, **TINY)
    records = _records(run)
    assert [r["epoch"] for r in records] == list(range(1, last_epoch + 1))
    assert [r["seconds"] for r in records] == [30.0] * last_epoch  # validation is not counted
    ckpt = load_checkpoint(run)
    assert (ckpt.progress.epoch, ckpt.progress.batch, ckpt.step) == (last_epoch, 0, 6 * last_epoch)
    assert ckpt.config.train.time_limit == minutes and ckpt.config.train.epochs == 6
    assert (run / "samples" / f"epoch_{last_epoch:04d}.png").exists()  # the epoch's end is a full one
    assert not (run / "samples" / f"epoch_{last_epoch + 1:04d}.png").exists()
    assert lines[-1] == _stop_line(run, f"{minutes:g}", last_epoch, 6, f"{last_epoch * 0.5:.1f}")
    assert clock.steps == 6 * last_epoch


def test_a_run_that_finishes_its_epochs_within_the_limit_says_nothing_of_it(tmp_path, clock):
    run, lines = tmp_path / "run", []
    vaelab.train(out=run, epochs=2, time_limit=1.0, log=lines.append, **TINY)  # the limit falls on the last epoch
    assert len(_records(run)) == 2 and load_checkpoint(run).epoch == 2
    assert not any(line.startswith("time limit") for line in lines)


def test_callbacks_see_the_last_epoch(tmp_path, clock):
    seen = []
    vaelab.train(
        out=tmp_path / "run",
        epochs=6,
        time_limit=1.0,
        log=lambda line: None,
        callbacks=[lambda e, r, m: seen.append(e)],
        **TINY,
    )
    assert seen == [1, 2]


def test_a_resume_with_a_larger_limit_counts_the_time_before_it(tmp_path, clock):
    run, lines = tmp_path / "run", []
    vaelab.train(out=run, epochs=6, time_limit=1.2, log=lambda line: None, **TINY)
    assert load_checkpoint(run).epoch == 3

    vaelab.resume(run, time_limit=2.2, progress=False, log=lines.append)
    records = _records(run)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]  # 1.5 min before the resume + 2 epochs: 2.5 >= 2.2
    assert sum(r["seconds"] for r in records) == 150.0
    assert load_checkpoint(run).epoch == 5 and load_checkpoint(run).config.train.time_limit == 2.2
    assert lines[-1] == _stop_line(run, "2.2", 5, 6, "2.5")

    lines.clear()
    vaelab.resume(run, time_limit=10, progress=False, log=lines.append)  # the epochs end first
    assert len(_records(run)) == 6 and load_checkpoint(run).epoch == 6
    assert not any(line.startswith("time limit") for line in lines)


@pytest.mark.parametrize("overrides", [{}, {"epochs": 9}, {"time_limit": 1.5}])
def test_a_resume_already_past_its_limit_trains_nothing_and_says_so(tmp_path, clock, overrides):
    run, lines = tmp_path / "run", []
    vaelab.train(out=run, epochs=6, time_limit=1.2, log=lambda line: None, **TINY)
    before = (run / "checkpoint.safetensors").read_bytes()
    steps = clock.steps

    vaelab.resume(run, progress=False, log=lines.append, **overrides)
    minutes = overrides.get("time_limit", 1.2)
    assert lines == [
        f"{run} already trained 1.5 min, past its time limit of {minutes:g} min; pass a larger --time-limit "
        f"to train longer"
    ]
    assert clock.steps == steps and len(_records(run)) == 3
    assert (run / "checkpoint.safetensors").read_bytes() == before


def test_a_mid_epoch_resume_counts_the_epochs_time_before_the_stop(tmp_path, clock):
    """Stopped by a signal in epoch 2's 4th step (20 s into it), resumed with a limit below what is done:
    epoch 2 is finished first (30 s in all), then the run stops."""
    run, lines = tmp_path / "run", []
    clock.signal_at = 10
    with pytest.raises(TrainingStopped):
        vaelab.train(out=run, epochs=4, log=lambda line: None, **TINY)
    assert load_checkpoint(run).progress.batch == 4

    vaelab.resume(run, time_limit=0.4, progress=False, log=lines.append)
    records = _records(run)
    assert [r["seconds"] for r in records] == [30.0, 30.0]
    assert load_checkpoint(run).epoch == 2 and clock.steps == 12
    assert lines[-1] == _stop_line(run, "0.4", 2, 4, "1.0")


@pytest.mark.parametrize("value", [0, -1, -0.5, math.inf, math.nan, "80"])
def test_the_config_refuses_a_limit_that_is_not_a_positive_number(value):
    with pytest.raises(VaelabError) as e:
        resolve_config("mlp2", time_limit=value)
    message = str(e.value)
    assert "train.time_limit" in message and len(message.splitlines()) == 1, message


def test_the_limit_is_a_flat_setting_in_minutes():
    assert resolve_config("mlp2", time_limit=80).train.time_limit == 80.0
    assert resolve_config("mlp2").train.time_limit is None


def test_the_command_line_stops_at_the_limit_and_resumes_with_a_larger_one(tmp_path, clock, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--epochs", "6", "--time-limit", "1", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert _stop_line(run, "1", 2, 6, "1.0") in out.splitlines()
    assert f"done: {run}" in out
    assert load_checkpoint(run).epoch == 2

    assert main(["train", "--resume", str(run), "--time-limit", "1.5", "--no-progress"]) == 0
    assert _stop_line(run, "1.5", 3, 6, "1.5") in capsys.readouterr().out.splitlines()
    assert load_checkpoint(run).epoch == 3 and len(_records(run)) == 3


@pytest.mark.parametrize("value, why", [("0", "must be > 0"), ("inf", "finite"), ("soon", "expected a number")])
def test_the_command_line_refuses_a_bad_limit(tmp_path, capsys, value, why):
    err = one_line_error(capsys, ["train", *TINY_ARGS, "--time-limit", value, "--out", str(tmp_path / "run")])
    assert "--time-limit" in err and why in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_every_rank_stops_after_the_epoch_that_rank_0s_clock_says(tmp_path):
    """torchrun, 2 CPU ranks whose clocks disagree (ddp_time_limit.py): rank 0's decides, no rank hangs."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*cmd, str(HERE / "ddp_time_limit.py"), str(run)], capture_output=True, text=True, timeout=240, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["epoch"] for r in _records(run)] == [1, 2]
    assert load_checkpoint(run).epoch == 2
    assert _stop_line(run, "1", 2, 6, "1.0") in done.stdout.splitlines()

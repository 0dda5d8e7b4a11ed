"""A run directory is vaelab's, and only vaelab's files in it are touched; one process at a time trains in it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaelab.cli import main
from vaelab.files import TEMP_SUFFIX
from vaelab.training.rundir import MARKER_NAME, RunDir

from clihelp import one_line_error

TINY = [
    "--preset",
    "mlp2",
    "--dataset",
    "shapes",
    "--image-size",
    "16",
    "--limit",
    "32",
    "--val-size",
    "16",
    "--batch-size",
    "16",
    "--no-progress",
]


def _train(out: Path, *extra: str) -> list[str]:
    return ["train", *TINY, "--epochs", "1", "--out", str(out), *extra]


def test_a_folder_of_the_users_is_refused_and_untouched(tmp_path, capsys):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "config.toml").write_text("my own config\n")
    (mine / "metrics.jsonl").write_text('{"mine": 1}\n')
    err = one_line_error(capsys, _train(mine))
    assert "is a folder with other files in it, not a vaelab run" in err
    assert sorted(os.listdir(mine)) == ["config.toml", "metrics.jsonl"]
    assert (mine / "config.toml").read_text() == "my own config\n"


def test_a_file_as_out_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert "is a file, not a folder" in one_line_error(capsys, _train(tmp_path / "notes.txt"))
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_an_empty_folder_becomes_a_run(tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(_train(out)) == 0
    assert (out / "checkpoint.safetensors").is_file() and (out / MARKER_NAME).is_file()


def test_a_run_that_never_reached_its_checkpoint_starts_afresh(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train(out)) == 0
    (out / "checkpoint.safetensors").unlink()  # killed after its metrics line, before its first checkpoint
    assert main(_train(out)) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # the old epoch 1 was dropped, not kept beside the new one


def test_resume_cleans_only_vaelabs_own_temp_files(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ours = [run / f".checkpoint.safetensors.k2j4{TEMP_SUFFIX}", run / "samples" / f".epoch_0002.png.x9{TEMP_SUFFIX}"]
    theirs = [
        run / ".notes.tmp",
        run / ".checkpoint.safetensors.tmp",
        run / "sub" / f".deep{TEMP_SUFFIX}",
        run / "tmpa1b2c3",
    ]
    for path in ours + theirs:
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert not any(p.exists() for p in ours)
    assert all(p.read_text() == "x" for p in theirs)


def test_a_second_process_on_a_locked_run_is_refused(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / "checkpoint.safetensors").read_bytes()
    with RunDir(run).lock():
        err = one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
        assert f"in use by another vaelab process (vaelab training: pid {os.getpid()}" in err
        assert "in use by another vaelab process" in one_line_error(capsys, _train(run))  # nor a new run there
        assert main(_train(tmp_path / "run2")) == 0  # another folder is free
    assert (run / "checkpoint.safetensors").read_bytes() == before
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0  # released on exit


@pytest.mark.slow
def test_two_real_trainings_on_one_folder_and_a_stale_lock(tmp_path):
    """The first holds the run; the second is refused naming its pid; once the first is killed, resume works."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vaelab",
            "train",
            *TINY,
            "--limit",
            "2000",
            "--epochs",
            "50",
            "--checkpoint-every",
            "5",
            "--out",
            str(out),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.safetensors").exists():
            assert time.time() < deadline and first.poll() is None, "the first training did not start"
            time.sleep(0.2)
        second = subprocess.run(
            [sys.executable, "-m", "vaelab", "train", *TINY, "--epochs", "1", "--seed", "7", "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [second.stderr.strip()]
        assert f"pid {first.pid}" in second.stderr and "in use by another vaelab process" in second.stderr
        resumed = subprocess.run(
            [sys.executable, "-m", "vaelab", "train", "--resume", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert resumed.returncode == 2 and f"pid {first.pid}" in resumed.stderr
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel releases it
        first.wait(30)
    assert str(first.pid) in (out / MARKER_NAME).read_text()  # a stale owner is named in the file ...
    done = subprocess.run(
        [sys.executable, "-m", "vaelab", "train", "--resume", str(out), "--epochs", "1", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr  # ... but does not hold the run

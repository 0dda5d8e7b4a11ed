"""A real training process killed with SIGKILL at random moments, resumed each time, ends bit-identical."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import vaelab

ARGS = [
    "--preset",
    "cvae2",
    "--dataset",
    "shapes",
    "--image-size",
    "32",
    "--limit",
    "192",
    "--val-size",
    "32",
    "--batch-size",
    "16",
    "--epochs",
    "3",
    "--checkpoint-every",
    "2",
    "--device",
    "cpu",
    "--no-progress",
]
TIMING = {"seconds", "images_per_s"}


def _vaelab(*args: str) -> subprocess.Popen:
    """`vaelab` in a child process, its output unbuffered: its first line says training has begun."""
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "vaelab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _training(proc: subprocess.Popen) -> float:
    """Wait until `proc` is past its start-up (its first line: training, resuming, finished); the time then."""
    first = proc.stdout.readline()
    assert first.startswith(("training", "resuming")) or "already finished" in first, first + proc.stderr.read()
    return time.perf_counter()


def _metrics(run):
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow
def test_random_sigkills_then_resume_is_bit_identical(tmp_path):
    straight = tmp_path / "straight"
    proc = _vaelab("train", *ARGS, "--out", str(straight))
    began = _training(proc)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    span = time.perf_counter() - began  # training and what follows it, without the start-up

    # Each kill lands at a random moment after start-up, so it hits training, checkpointing or the
    # final writes, on a fast machine as on a slow one.
    run = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    for attempt in range(40):  # noqa: B007 (the number of starts, printed after the loop)
        started = (run / "checkpoint.safetensors").exists()
        proc = _vaelab("train", "--resume", str(run)) if started else _vaelab("train", *ARGS, "--out", str(run))
        _training(proc)
        try:
            proc.wait(timeout=rng.uniform(0.0, span))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0, proc.stderr.read()
        if kills >= 4:
            break
        # finished before we killed it often enough: do it again from scratch with other timings
        for path in sorted(run.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    assert kills >= 4, f"only {kills} kills landed"
    print(f"{kills} SIGKILLs in {attempt + 1} starts, resumed after each; the run trains for {span:.2f} s")  # -s

    a, b = vaelab.load(straight).state_dict(), vaelab.load(run).state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _metrics(straight) == _metrics(run)
    assert not list(run.rglob(".*.tmp"))

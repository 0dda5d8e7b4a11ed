"""The files of a run directory, and who may touch them.

RUN/.vaelab-run                 marks the folder as a vaelab run; locked while a process trains in it
RUN/config.toml                 the fully resolved config
RUN/metrics.jsonl               one JSON object per finished epoch
RUN/steps.jsonl                 one JSON object per window of steps (the loss between epochs; see steplog.py)
RUN/checkpoint.safetensors      the last checkpoint (see checkpoint.py)
RUN/samples/epoch_NNNN.png      fixed-noise samples after each epoch (0000: untrained)
RUN/tensorboard/                TensorBoard event files, with train.tensorboard (see tensorboard.py)

A folder is a run when it holds the marker or a checkpoint. `vaelab train
--out` starts a run only in a new folder, an empty one, or a run of its own
that never reached its first checkpoint; anything else of the user's is
left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import RunConfig, to_toml
from ..errors import VaelabError
from ..files import os_errors, remove_temp_files, write_text
from . import runfiles
from .checkpoint import CHECKPOINT_NAME

MARKER_NAME = ".vaelab-run"

try:  # POSIX: an advisory lock that the kernel drops when its owner dies, so a stale lock cannot block
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, one process per run is the user's to keep
    fcntl = None  # type: ignore[assignment]


def default_run_dir(preset: str) -> Path:
    return Path("runs") / f"{preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def steps_path(self) -> Path:
        return self.path / "steps.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def marker_path(self) -> Path:
        return self.path / MARKER_NAME

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    def sample_path(self, epoch: int) -> Path:
        return self.samples_dir / f"epoch_{epoch:04d}.png"

    def write_config(self, cfg: RunConfig) -> None:
        write_text(self.config_path, to_toml(cfg))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Rewrite the (small) file atomically, so a kill mid-write never leaves half a line."""
        self._write_metrics([*self.read_metrics(), record])

    def read_metrics(self) -> list[dict[str, Any]]:
        """The finished epochs' records, checked (see `runfiles`); damaged lines are left out."""
        return self.read_metrics_checked()[0]

    def read_metrics_checked(self) -> tuple[list[dict[str, Any]], list[runfiles.Problem]]:
        """The good records and, for each damaged line left out, where and why (for a warning)."""
        return runfiles.read_metrics(self.metrics_path)

    def training_seconds(self, through_epoch: int) -> float:
        """The training time of the finished epochs up to `through_epoch`: their records' `seconds`, summed
        (the time a `train.time_limit` counts; a damaged line left out counts nothing)."""
        return sum(r["seconds"] for r in self.read_metrics() if r["epoch"] <= through_epoch)

    def keep_metrics_through(self, epoch: int) -> str | None:
        """Keep the good records up to `epoch` (the checkpoint's, which is the truth: later lines were written
        after it, before a crash) and rewrite the file; returns one line saying what was repaired, if anything."""
        records, problems = self.read_metrics_checked()
        self._write_metrics([r for r in records if r["epoch"] <= epoch])
        return runfiles.describe_dropped(self.metrics_path, problems) if problems else None

    def _write_metrics(self, records: list[dict[str, Any]]) -> None:
        write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))

    def append_steps(self, record: dict[str, Any]) -> None:
        """Append one line (rewriting a file that grows all run long would cost quadratic time); a kill
        mid-write leaves at most a torn last line, which `read_steps` leaves out and a resume removes."""
        with os_errors(f"cannot write {self.steps_path}"), open(self.steps_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read_steps(self) -> list[dict[str, Any]]:
        """The step windows' records, checked (see `runfiles`); damaged lines are left out."""
        return self.read_steps_checked()[0]

    def read_steps_checked(self) -> tuple[list[dict[str, Any]], list[runfiles.Problem]]:
        return runfiles.read_steps(self.steps_path)

    def keep_steps_through(self, step: int) -> str | None:
        """As `keep_metrics_through`, for steps.jsonl and the checkpoint's step."""
        if not self.steps_path.exists():
            return None
        records, problems = self.read_steps_checked()
        write_text(self.steps_path, "".join(json.dumps(r) + "\n" for r in records if r["step"] <= step))
        return runfiles.describe_dropped(self.steps_path, problems) if problems else None

    def remove_stale_temp_files(self) -> list[Path]:
        """Temp files of vaelab's own writes that a kill interrupted, where training writes (the files they
        were replacing are intact). Nothing else in the folder is touched."""
        return [*remove_temp_files(self.path), *remove_temp_files(self.samples_dir)]

    # ------------------------------------------------------------------ ownership

    def is_run(self) -> bool:
        """Whether the folder is vaelab's: it holds the marker or a checkpoint."""
        return self.marker_path.is_file() or self.checkpoint_path.exists()

    def check_can_start(self) -> None:
        """Refuse (one line) to start a new run where it would overwrite or mix with something."""
        with os_errors(f"cannot use --out {self.path}"):
            if self.path.exists() and not self.path.is_dir():
                raise VaelabError(f"--out {self.path} is a file, not a folder; pick another --out")
            self._refuse_if_locked()
            self.refuse_if_started()
            if self.path.is_dir() and not self.is_run() and any(self.path.iterdir()):
                raise VaelabError(
                    f"--out {self.path} is a folder with other files in it, not a vaelab run; "
                    f"pick a new or empty folder"
                )

    def refuse_if_started(self) -> None:
        """A folder that holds a checkpoint is a run to resume, never one to start again."""
        if self.checkpoint_path.exists():
            raise VaelabError(
                f"{self.path} already holds a run; continue it with --resume {self.path} or pick another --out"
            )

    def start_fresh(self) -> None:
        """Forget what a run that never reached its first checkpoint left (its metrics, samples, event files)."""
        with os_errors(f"cannot start the run in {self.path}"):
            self.metrics_path.unlink(missing_ok=True)
            self.steps_path.unlink(missing_ok=True)
            if self.samples_dir.is_dir():
                for grid in self.samples_dir.glob("epoch_*.png"):
                    grid.unlink()
            if self.tensorboard_dir.is_dir():
                for events in self.tensorboard_dir.glob("events.out.tfevents.*"):
                    events.unlink()
            self.remove_stale_temp_files()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run for this process: a second process on the same folder is refused, naming the first.

        The lock is the kernel's (flock on RUN/.vaelab-run), so it is released
        when the process exits however it exits; the marker file stays.
        """
        with os_errors(f"cannot lock the run {self.path}"):
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.marker_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._take(fd)
            with os_errors(f"cannot lock the run {self.path}"):
                os.ftruncate(fd, 0)
                os.pwrite(
                    fd,
                    f"vaelab training: pid {os.getpid()} on {socket.gethostname()} since "
                    f"{datetime.now().isoformat(timespec='seconds')}\n".encode(),
                    0,
                )
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _take(self, fd: int) -> None:
        """flock `fd` without waiting, or refuse naming the process that holds the run."""
        if fcntl is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise VaelabError(
                f"{self.path} is in use by another vaelab process ({owner}); wait for it to finish or stop it"
            ) from None

    def _refuse_if_locked(self) -> None:
        """The lock's one-line refusal now, if another process holds the run (the lock is not kept)."""
        if not self.marker_path.is_file():
            return
        fd = os.open(self.marker_path, os.O_RDONLY)
        try:
            self._take(fd)
        finally:
            os.close(fd)

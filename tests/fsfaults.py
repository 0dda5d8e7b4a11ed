"""Faults of the file system, real where the test can make them (root: a full or read-only tmpfs), else mocked."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import vaelab.files


def fail_writes(monkeypatch, code: int = errno.ENOSPC) -> None:
    """Every file vaelab writes through `vaelab.files` fails mid-write with OSError `code` (default: disk full)."""
    real_fdopen = os.fdopen

    class Failing:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def fileno(self):
            return self.f.fileno()

        def write(self, data):
            self.f.write(data[: len(data) // 2])  # half written, then the disk is full
            self.f.flush()
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(vaelab.files.os, "fdopen", lambda fd, *a, **k: Failing(real_fdopen(fd, *a, **k)))


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path | None]:
    """A small tmpfs mounted at `path` (e.g. "size=64k" or "ro"), or None where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield None
        return
    opts = ",".join(("size=256k", *options))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> None:
    """Fill the file system holding `folder` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)

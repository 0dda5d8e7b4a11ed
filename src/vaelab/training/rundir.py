"""The files of a run directory.

RUN/config.toml                 the fully resolved config
RUN/metrics.jsonl               one JSON object per finished epoch
RUN/checkpoint.safetensors      the last checkpoint (see checkpoint.py)
RUN/samples/epoch_NNNN.png      fixed-noise samples after each epoch (0000: untrained)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import RunConfig, to_toml
from .checkpoint import CHECKPOINT_NAME


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
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_NAME

    def sample_path(self, epoch: int) -> Path:
        return self.path / "samples" / f"epoch_{epoch:04d}.png"

    def write_config(self, cfg: RunConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.config_path, to_toml(cfg))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Rewrite the (small) file atomically, so a kill mid-write never leaves half a line."""
        self._write_metrics([*self.read_metrics(), record])

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def keep_metrics_through(self, epoch: int) -> None:
        """Drop lines for epochs after `epoch` (written after the last checkpoint, before a crash)."""
        self._write_metrics([r for r in self.read_metrics() if r.get("epoch", 0) <= epoch])

    def _write_metrics(self, records: list[dict[str, Any]]) -> None:
        write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))

    def remove_stale_temp_files(self) -> None:
        """Temp files of writes that a kill interrupted (the files they were replacing are intact)."""
        for tmp in self.path.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

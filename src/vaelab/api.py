"""The Python API: the command line's verbs in a few lines.

    import vaelab
    run = vaelab.train("cvae2", epochs=1, out="runs/demo")   # a Run
    model = run.model                                        # or vaelab.load("runs/demo")
    images = model.sample(64)                                # (64, 1, 28, 28) in [0, 1]
    q = model.encode(images)                                 # q.mu, q.logvar: (64, 2)
    print(vaelab.evaluate("runs/demo", split="test"))        # {'split': 'test', 'n': 10000, 'elbo': ...}
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig, apply_overrides, nest_overrides, read_toml
from .errors import VaelabError
from .evaluation.elbo import evaluate_elbo
from .models.vae import VAE
from .presets import DEFAULT_PRESET, PRESETS
from .training.checkpoint import load_checkpoint
from .training.data import load_split
from .training.rundir import RunDir
from .training.trainer import load_model, resume_run, start_run


@dataclass(frozen=True)
class Run:
    """A run directory: its config, its metrics and (loaded on first use) its model."""

    path: Path

    @property
    def config(self) -> RunConfig:
        return load_checkpoint(self.path).config

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return RunDir(self.path).read_metrics()

    @functools.cached_property
    def model(self) -> VAE:
        return load_model(self.path)


def resolve_config(preset: str | None = None, *, config: str | Path | None = None,
                   **overrides: Any) -> RunConfig:
    """Preset, then a TOML file, then flat overrides (`epochs=3`, `batch_size=64`, ...)."""
    file_values = read_toml(config) if config is not None else {}
    name = preset or file_values.get("preset") or DEFAULT_PRESET  # an explicit preset wins over the file's
    cfg = PRESETS[name].config
    cfg = apply_overrides(cfg, {k: v for k, v in file_values.items() if k != "preset"})
    given = {k: v for k, v in overrides.items() if v is not None}
    return apply_overrides(cfg, nest_overrides(given))


def train(preset: str | None = None, *, config: str | Path | None = None, out: str | Path | None = None,
          data_dir: str | Path | None = None, progress: bool = True, callbacks=(), log=print, **overrides: Any) -> Run:
    """Train a preset (default: the config file's, else cvae2) with a TOML file and flat overrides on top."""
    cfg = resolve_config(preset, config=config, **overrides)
    return Run(start_run(cfg, out=out, data_dir=data_dir, callbacks=callbacks, progress=progress, log=log))


def resume(run: str | Path, *, data_dir: str | Path | None = None, progress: bool = True, callbacks=(), log=print,
           **overrides: Any) -> Run:
    """Continue a run from its last checkpoint; `epochs=` (and other settings that do not alter results) may change."""
    nested = nest_overrides({k: v for k, v in overrides.items() if v is not None})
    return Run(resume_run(run, overrides=nested, data_dir=data_dir, callbacks=callbacks, progress=progress, log=log))


def load(run: str | Path, *, device: str = "cpu") -> VAE:
    """The trained model of a run directory or checkpoint file."""
    return load_model(run, device=device)


def evaluate(run: str | Path, *, split: str = "test", limit: int | None = None, seed: int = 0,
             batch_size: int | None = None, data_dir: str | Path | None = None, device: str = "cpu") -> dict[str, Any]:
    """Mean test (or train) ELBO, recon and KL in nats per image; deterministic for a given seed."""
    if split not in ("train", "test"):
        raise VaelabError(f"split must be 'train' or 'test', not {split!r}")
    if limit is not None and limit < 1:
        raise VaelabError("--limit must be at least 1")
    model = load_model(run, device=device)
    cfg: RunConfig = model.config
    images = load_split(cfg.data, split, data_dir).images
    images = images[:limit] if limit is not None else images
    result = evaluate_elbo(model, images, batch_size=batch_size or cfg.train.eval_batch_size,
                           dynamic_binarize=cfg.data.binarize == "dynamic", seed=seed)
    return {"split": split, **result}


def presets() -> dict[str, RunConfig]:
    """The named presets and their configs."""
    return {name: PRESETS[name].config for name in PRESETS.names()}


__all__ = ["Run", "evaluate", "load", "presets", "resolve_config", "resume", "train"]

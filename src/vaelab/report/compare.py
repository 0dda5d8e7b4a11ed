"""Several runs side by side (`vaelab compare`): what each is, its saved evaluation, and its training curve.

Nothing is measured here: a run's numbers are its RUN/eval.json (the latest `vaelab evaluate`), its facts come
from its checkpoint (config, image shape, epochs; parameters counted on a freshly built copy) and its training
time from metrics.jsonl (the sum of the epochs' `seconds`, validation not counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import VaelabError
from ..models import build_model, count_parameters
from ..training.checkpoint import load_checkpoint
from ..training.rundir import RunDir
from ..training.runfiles import read_eval

SETTINGS = ("split", "n", "k", "seed", "frechet_n")  # what makes two evaluations' numbers comparable


@dataclass(frozen=True)
class RunFacts:
    """One run as the comparison shows it."""

    path: Path  # the run directory
    label: str  # its folder name, made unique among the runs compared
    config: RunConfig
    image_shape: tuple[int, int, int]
    parameters: int | None  # None where a part of the model is not importable here
    epochs: int  # finished epochs, from the checkpoint
    metrics: list[dict[str, Any]]  # metrics.jsonl's good records
    evaluation: dict[str, Any] | None  # RUN/eval.json, None where there is none (or it cannot be used)
    eval_problem: str | None  # why RUN/eval.json cannot be used

    @property
    def training_minutes(self) -> float:
        return sum(r["seconds"] for r in self.metrics) / 60.0

    def as_json(self) -> dict[str, Any]:
        return {
            "run": str(self.path),
            "label": self.label,
            "preset": self.config.preset,
            "dataset": self.config.data.name,
            "image_shape": list(self.image_shape),
            "parameters": self.parameters,
            "epochs": self.epochs,
            "training_minutes": self.training_minutes,
            "evaluation": self.evaluation,
        }


def run_folder(run: str | Path) -> Path:
    """A run directory, or a checkpoint file's folder."""
    path = Path(run)
    return path.parent if path.is_file() else path


def load_runs(runs: list[str | Path], *, any_data: bool = False) -> list[RunFacts]:
    """The facts of each run, in order; a one-line `VaelabError` for a path that is not a vaelab run, a run named
    twice, or (unless `any_data`) runs on different datasets or image shapes."""
    seen: dict[Path, str] = {}
    for run in runs:
        key = run_folder(run).resolve()
        if key in seen:
            raise VaelabError(f"{run} is the same run as {seen[key]}: name each run once")
        seen[key] = str(run)
    checkpoints = [load_checkpoint(run, with_optimizer=False) for run in runs]  # refuses what is not a run
    if not any_data:
        first = checkpoints[0]
        for run, ckpt in zip(runs[1:], checkpoints[1:]):
            if (ckpt.config.data.name, ckpt.image_shape) != (first.config.data.name, first.image_shape):
                raise VaelabError(
                    f"{runs[0]} ({_data(first.config, first.image_shape)}) and {run} "
                    f"({_data(ckpt.config, ckpt.image_shape)}) were trained on different data: their numbers are "
                    f"not comparable (--any-data compares them anyway)"
                )
    labels = unique_labels([run_folder(run) for run in runs])
    facts = []
    for run, ckpt, label in zip(runs, checkpoints, labels):
        folder = run_folder(run)
        evaluation, problem = read_eval(folder / "eval.json")
        facts.append(
            RunFacts(
                path=folder,
                label=label,
                config=ckpt.config,
                image_shape=ckpt.image_shape,
                parameters=_parameters(ckpt.config, ckpt.image_shape),
                epochs=ckpt.epoch,
                metrics=RunDir(folder).read_metrics(),
                evaluation=evaluation,
                eval_problem=problem,
            )
        )
    return facts


def _data(config: RunConfig, shape: tuple[int, int, int]) -> str:
    return f"{config.data.name}, {'x'.join(map(str, shape))}"


def _parameters(config: RunConfig, shape: tuple[int, int, int]) -> int | None:
    try:
        return count_parameters(build_model(config.model, config.objective, shape))
    except VaelabError:  # a part registered by code that is not imported here
        return None


def unique_labels(folders: list[Path]) -> list[str]:
    """Each folder's name; where two share one, as many of the parent folders as tell them apart."""
    parts = [folder.resolve().parts for folder in folders]
    labels = [folder.name or str(folder) for folder in folders]
    depth = 1
    while len(set(labels)) < len(labels):
        depth += 1
        clashing = {label for label in labels if labels.count(label) > 1}
        labels = [
            "/".join(p[-depth:]) if label in clashing else label for label, p in zip(labels, parts)
        ]  # distinct resolved folders differ somewhere, so this ends
    return labels


def differing_settings(facts: list[RunFacts]) -> dict[str, list[Any]]:
    """{setting: each evaluated run's value} for the evaluation settings that are not the same for all."""
    evaluations = [f.evaluation for f in facts if f.evaluation is not None]
    out = {}
    for key in SETTINGS:
        values = [e.get(key) for e in evaluations]
        if len({repr(v) for v in values}) > 1:
            out[key] = values
    return out


def compare_figure(facts: list[RunFacts]):
    """The runs' −ELBO against training time on one axes (`time_chart.time_figure`): in each run's units where
    they all agree, else in nats per image. Runs without a finished epoch are left out; None when none has one."""
    from ..viz import time_chart

    drawn = [f for f in facts if f.metrics]
    if not drawn:
        return None
    units = [time_chart.likelihood_units(f.config, f.image_shape) for f in drawn]
    shared = units[0] if all(u == units[0] for u in units) else time_chart.NATS
    datasets = sorted({f.config.data.name for f in drawn})
    runs = "1 run" if len(drawn) == 1 else f"{len(drawn)} runs"
    title = f"{runs} on {', '.join(datasets)}: −ELBO against training time"
    return time_chart.time_figure([(f.label, f.metrics, shared) for f in drawn], title=title)

"""The Python API: the command line's verbs in a few lines.

import vaelab
run = vaelab.train("cvae2", epochs=1, out="runs/demo")   # a Run
model = run.model                                        # or vaelab.load("runs/demo")
images = model.sample(64)                                # (64, 1, 28, 28) in [0, 1]
q = model.encode(images)                                 # q.mu, q.logvar: (64, 2)
print(vaelab.evaluate("runs/demo", split="test"))        # {'split': 'test', 'n': 10000, 'elbo': ...}
scores = vaelab.anomaly_scores("runs/demo", dataset="fashion-mnist", score="iwae")  # higher = more anomalous
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from . import checks
from .config import RunConfig, apply_overrides, nest_overrides, read_toml
from .data import load_images
from .data.catalog import channels
from .errors import VaelabError
from .evaluation import anomaly as _anomaly
from .evaluation.classifier import load_or_train
from .evaluation.disentanglement.measure import (
    DEFAULT_N as DISENTANGLEMENT_N,
)
from .evaluation.disentanglement.measure import (
    SHAPES_VARIANTS,
    FactorSource,
    check_sizes,
    held_source,
    measure_disentanglement,
    shapes_grid_source,
)
from .evaluation.iwae import default_chunk
from .evaluation.summary import MIN_FRECHET_N, evaluate_model
from .files import check_can_write, write_text
from .models.expost import EXPOST_N, fit_expost
from .models.registry import plugin_modules, require_parts
from .models.vae import VAE
from .presets import DEFAULT_PRESET, FOLDER_PLACEHOLDER, FOLDER_PRESET, PRESETS
from .progress import QUIET, Reporter
from .training.batches import binarize_static
from .training.checkpoint import load_checkpoint
from .training.data import load_split, select_classes
from .training.rundir import RunDir
from .training.runfiles import EVALS_DIR, eval_name
from .training.trainer import load_model, resume_run, start_run
from .version import __version__


@dataclass(frozen=True)
class Run:
    """A run directory: its config, its metrics and (loaded on first use) its model."""

    path: Path

    @property
    def config(self) -> RunConfig:
        return load_checkpoint(self.path, with_optimizer=False).config

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return RunDir(self.path).read_metrics()

    @functools.cached_property
    def model(self) -> VAE:
        return load_model(self.path)


def resolve_config(preset: str | None = None, *, config: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Preset, then a TOML file, then flat overrides (`epochs=3`, `batch_size=64`, ...).

    The result lists the modules outside vaelab that registered its parts
    (`plugins`; those a file lists are imported first where its parts are not
    registered), and is named `custom-<encoder>[-<decoder>]` instead of the
    preset's name when its networks are not the preset's.
    """
    file_values = read_toml(config) if config is not None else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    file_data = file_values.get("data")
    dataset = given.get("dataset") or (file_data.get("name") if isinstance(file_data, dict) else None)
    default = FOLDER_PRESET if isinstance(dataset, str) and dataset.startswith("folder:") else DEFAULT_PRESET
    name = preset or file_values.get("preset") or default  # an explicit preset wins over the file's
    # a run's own config.toml, named custom-...: it holds every key, so it applies on the defaults
    own = preset is None and isinstance(name, str) and bool(re.fullmatch(r"custom(-.*)?", name)) and name not in PRESETS
    base = RunConfig() if own else PRESETS[name].config
    cfg = apply_overrides(base, {k: v for k, v in file_values.items() if k != "preset"})
    cfg = apply_overrides(cfg, nest_overrides(given))
    if cfg.data.name == FOLDER_PLACEHOLDER:
        raise VaelabError(f"the {name} preset trains on your own images: name their folder with --dataset folder:PATH")
    asked = "binarize" in given or "binarize" in (file_values.get("data") or {})
    _refuse_binarised_colour(cfg, asked)
    require_parts(cfg)
    return dataclasses.replace(cfg, preset=_run_name(None if own else name, base, cfg), plugins=plugin_modules(cfg))


def _refuse_binarised_colour(cfg: RunConfig, asked: bool) -> None:
    """A preset that binarises (cvae2, the default) turns colour photos into black-and-white blobs: refused
    unless the flags or the file asked for it."""
    if cfg.data.binarize == "none" or asked or channels(cfg.data.name, cfg.data.grayscale) != 3:
        return
    raise VaelabError(
        f"the {cfg.preset} preset binarises its images (data.binarize = {cfg.data.binarize}), which "
        f"turns the colour images of {cfg.data.name} into black and white; for colour, train "
        f"--preset {'cifar-hvae' if cfg.data.name == 'cifar10' else FOLDER_PRESET} (see 'Train on your own "
        f"images' in the README), or pass "
        f"--binarize {cfg.data.binarize} to binarise anyway"
    )


def _run_name(preset: str | None, base: RunConfig, cfg: RunConfig) -> str:
    """The preset's name while the networks are the preset's own, else custom-<encoder>[-<decoder>]."""
    m = cfg.model
    if preset is not None and (m.encoder, m.decoder) == (base.model.encoder, base.model.decoder):
        return preset
    nets = m.encoder if m.encoder == m.decoder else f"{m.encoder}-{m.decoder}"
    return "custom-" + re.sub(r"[^A-Za-z0-9_.-]", "_", nets)  # it names the default run folder


def train(
    preset: str | None = None,
    *,
    config: str | Path | None = None,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    callbacks=(),
    log=print,
    **overrides: Any,
) -> Run:
    """Train a preset (default: the config file's, else cvae2) with a TOML file and flat overrides on top."""
    cfg = resolve_config(preset, config=config, **overrides)
    return Run(start_run(cfg, out=out, data_dir=data_dir, callbacks=callbacks, progress=progress, log=log))


def resume(
    run: str | Path,
    *,
    data_dir: str | Path | None = None,
    progress: bool = True,
    callbacks=(),
    log=print,
    **overrides: Any,
) -> Run:
    """Continue a run from its last checkpoint; `epochs=` (and other settings that do not alter results) may change."""
    nested = nest_overrides({k: v for k, v in overrides.items() if v is not None})
    return Run(resume_run(run, overrides=nested, data_dir=data_dir, callbacks=callbacks, progress=progress, log=log))


def load(run: str | Path, *, device: str = "cpu", weights: str = "ema") -> VAE:
    """The trained model of a run directory or checkpoint file: with `weights="ema"` (the default) the moving
    average of its weights where the run kept one (train.ema), with "raw" the weights themselves."""
    return load_model(run, device=device, weights=weights)


def evaluate(
    run: str | Path,
    *,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    data_dir: str | Path | None = None,
    device: str = "cpu",
    iwae_k: int = 100,
    chunk: int | None = None,
    frechet: bool = True,
    frechet_n: int = 5000,
    cache_dir: str | Path | None = None,
    classifier_epochs: int = 2,
    classifier_limit: int | None = None,
    write: bool = True,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
    weights: str = "ema",
    disentanglement: bool = False,
    disentanglement_n: int = DISENTANGLEMENT_N,
    dci_predictor: str = "random-forest",
    expost_levels: int | None = None,
    expost_n: int = EXPOST_N,
) -> dict[str, Any]:
    """Measure a run on a split; returns one flat dict and (with `write`) saves it (`save_evaluation`).

    Keys: split, n, seed, elbo / recon / kl (analytic KL, one z per image),
    k and nll_iwae (-mean IWAE bound with k samples; iwae_k=0 skips it),
    iwae_gap (-elbo - nll_iwae >= 0: how much tighter the IWAE bound is),
    bits_per_dim (+ _from, _note; null unless the likelihood is a probability
    mass on the data: Bernoulli on binarised data, or a discretised logistic
    (mixture) on 8-bit data), recon_mse (z = mu, [0, 1] pixels), latent_dim,
    active_units, kl_per_dim, frechet_distance (+ _n, _classifier,
    _classifier_accuracy, _note), dataset, preset, classes, device and weights
    ("ema" or "raw": which weights were measured, see `load`); for a
    hierarchy kl_per_group, group_dims and active_units_per_group. Every mean
    over the images has its standard error beside it, `<key>_se` (elbo_se,
    nll_iwae_se, bits_per_dim_se, ...; None for fewer than two images). A run
    trained on some classes (data.classes) is measured on those classes of the split.

    The Fréchet distance compares min(n, frechet_n) samples with as many
    split images in the features of a small CNN that vaelab trains on the
    dataset once and caches (see `vaelab.evaluation.classifier`): comparable
    only between runs on the same dataset with the same classifier file
    (`frechet_classifier`) and n, never with Inception FIDs from papers. `chunk` bounds the (image, sample) pairs
    decoded at once (default 256 on CPU, 4096 on CUDA); it changes memory and
    speed, not the numbers. Deterministic for a given seed and device.
    `progress` shows each pass's progress on standard error (see `vaelab.progress`).

    `disentanglement` adds MIG, the FactorVAE score and DCI of the posterior means (a hierarchy's top group),
    for a dataset with factors: `disentanglement_n` codes and votes to train on, half as many to test,
    `dci_predictor` "random-forest", "gbt" or "logistic"; keys `mig`, `factorvae_score`, `dci_*`,
    `disentanglement_settings`, ... (docs/evaluation.md, "Disentanglement"). Needs scikit-learn.

    `expost_levels` L adds `frechet_distance_expost`: the same Fréchet distance for samples whose top groups,
    down to L resolutions (`VAE.levels`), come from a Gaussian fitted to their posterior means on `expost_n`
    training images (a seeded random subset; `models.expost`), with `expost_levels`, `expost_groups` and
    `expost_n`. The likelihood figures do not change: the fitted Gaussian is a sampler, not the model's prior.
    """
    if split not in ("train", "test"):
        raise VaelabError(f"split must be 'train' or 'test', not {split!r}")
    for name, value, least in (
        ("limit", limit, 1),
        ("iwae_k", iwae_k, 0),
        ("chunk", chunk, 1),
        ("frechet_n", frechet_n, 1),
        ("disentanglement_n", disentanglement_n, 4),
        ("expost_n", expost_n, 2),
    ):
        if value is not None:
            checks.whole(name, value, low=least)
    if batch_size is not None:
        checks.whole("batch_size", batch_size, low=1, high=checks.MAX_BATCH_SIZE)
    checks.seed("seed", seed)
    if expost_levels is not None and not frechet:
        raise VaelabError("--expost-levels measures samples by the Fréchet distance: it cannot go with --no-frechet")
    model = load_model(run, device=device, weights=weights)
    cfg: RunConfig = model.config
    if expost_levels is not None:
        checks.whole("expost levels", expost_levels, low=1, high=len(model.levels))
    data = load_split(cfg.data, split, data_dir)
    if cfg.data.classes is not None:
        data = select_classes(data, cfg.data.classes, cfg.data.name)
    images = data.images[:limit] if limit is not None else data.images
    source = _disentanglement_source(cfg, data, split, limit, data_dir) if disentanglement else None
    if source is not None:
        check_sizes(source, disentanglement_n, disentanglement_n // 2, model.latent_dim)
    if iwae_k > 0:
        checks.iwae_memory(
            iwae_k,
            chunk or default_chunk(model.device),
            batch_size or cfg.train.eval_batch_size,
            len(images),
            model.image_shape,
        )

    classifier, note = None, "skipped (--no-frechet)"
    if frechet and min(len(images), frechet_n) < MIN_FRECHET_N:
        note = f"needs at least {MIN_FRECHET_N} images, got {min(len(images), frechet_n)}"
    elif frechet:
        classifier, note = _frechet_classifier(
            cfg,
            data_dir,
            cache_dir,
            classifier_epochs,
            classifier_limit,
            device,
            log,
            Reporter("evaluating", enabled=progress),
        )
    expost = None
    if expost_levels is not None and classifier is not None:
        expost = fit_expost(model, expost_images(cfg, data_dir, expost_n, seed), expost_levels)
    result = evaluate_model(
        model,
        images,
        binarize=cfg.data.binarize,
        likelihood=cfg.model.likelihood,
        k=iwae_k,
        chunk=chunk,
        batch_size=batch_size or cfg.train.eval_batch_size,
        seed=seed,
        classifier=classifier,
        frechet_n=frechet_n,
        frechet_note=note,
        expost=expost,
        progress=Reporter("evaluating", enabled=progress),
    )
    if expost is not None:
        result["expost_levels"] = expost_levels
    if source is not None:
        result |= measure_disentanglement(
            model,
            source,
            n=disentanglement_n,
            predictor=dci_predictor,
            seed=seed,
            batch_size=batch_size or cfg.train.eval_batch_size,
            dynamic_binarize=cfg.data.binarize == "dynamic",
            progress=Reporter("evaluating", enabled=progress),
        )
    result = {
        "split": split,
        **result,
        "dataset": cfg.data.name,
        "preset": cfg.preset,
        "classes": list(cfg.data.classes) if cfg.data.classes is not None else None,
        "device": str(model.device),
        "weights": model.weights,
    }  # the numbers are reproducible for a seed on a device
    if write:
        save_evaluation(run, result)
    return result


def expost_images(cfg: RunConfig, data_dir, n: int, seed: int) -> torch.Tensor:
    """Up to n of the run's training images, its validation part included (a random subset fixed by the seed:
    a folder's split is sorted by class), which an ex-post Gaussian is fitted to."""
    train = load_split(cfg.data, "train", data_dir)
    if cfg.data.classes is not None:
        train = select_classes(train, cfg.data.classes, cfg.data.name)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.images[order[:n]]


def save_evaluation(run: str | Path, result: dict[str, Any]) -> Path:
    """Keep `evaluate`'s result (atomically): in RUN/evals/<split>-k<K>-seed<S>-n<N>[-fd<N>].json, with when
    and by which torch and vaelab it was saved, where an evaluation with other settings never replaces it;
    and as RUN/eval.json, the latest. The report reads them all (`runfiles.read_evals`)."""
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    saved = {
        **result,
        "date": datetime.now().isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "vaelab_version": __version__,
    }
    name = eval_name(result)
    if result.get("disentanglement_n"):  # one with the disentanglement metrics never replaces one without
        name = name.removesuffix(".json") + f"-dis{result['disentanglement_n']}.json"
    write_text(run_dir / EVALS_DIR / name, json.dumps(saved, indent=1) + "\n")
    return write_text(run_dir / "eval.json", json.dumps(result, indent=1) + "\n")


def _disentanglement_source(cfg: RunConfig, data, split: str, limit: int | None, data_dir) -> FactorSource:
    """Where `--disentanglement` takes its images: new ones from the shapes grid for a run on all of shapes,
    else the split's own images with factors (a run on some shapes classes: those; refused without factors)."""
    if cfg.data.name in SHAPES_VARIANTS and cfg.data.classes is None:
        static = binarize_static if cfg.data.binarize == "static" else None
        return shapes_grid_source(cfg.data.name, cfg.data.image_size, cfg.data.grayscale, static)
    if data.factors is None:
        raise VaelabError(f"--disentanglement needs a dataset with generative factors (such as shapes): "
                          f"{cfg.data.name} has none")  # fmt: skip
    if limit is not None:
        data = data.subset(torch.arange(min(limit, len(data))))
    return held_source(data, split)


def _frechet_classifier(
    cfg: RunConfig,
    data_dir,
    cache_dir,
    epochs: int,
    train_limit: int | None,
    device: str,
    log,
    progress: Reporter = QUIET,
) -> tuple[Any, str | None]:
    """The dataset's cached classifier, or (None, why there is none)."""
    raw = dataclasses.replace(cfg.data, binarize="none")  # the dataset as it is, every class
    train = load_split(raw, "train", data_dir)
    if train.labels is None:
        return None, f"{raw.name} has no labels to train the feature classifier on"
    test = load_split(raw, "test", data_dir)
    if test.labels is None or len(torch.unique(train.labels)) < 2:
        return None, f"{raw.name} needs at least two labelled classes to train the feature classifier on"
    return load_or_train(
        raw.name,
        train,
        test,
        cache_dir=cache_dir,
        epochs=epochs,
        train_limit=train_limit,
        device=device,
        log=log,
        progress=progress,
    ), None


def presets() -> dict[str, RunConfig]:
    """The named presets and their configs."""
    return {name: PRESETS[name].config for name in PRESETS.names()}


def anomaly_scores(
    run: str | Path,
    *,
    input_dir: str | Path | None = None,
    dataset: str | None = None,
    split: str = "test",
    score: str = "elbo",
    k: int = 100,
    limit: int | None = None,
    normal_classes=None,
    output: str | Path | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    chunk: int | None = None,
    data_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    grid: str | Path | None = None,
    weights: str = "ema",
) -> _anomaly.AnomalyResult:
    """Anomaly score per image (higher = more anomalous): -ELBO or -IWAE_k in nats under a trained run.

    Images come from `input_dir` (every image file under it, resized to the
    run's image shape, grey or RGB as the run is) or from a `dataset` split.
    They are preprocessed as the run's training data was (binarised when the
    run binarises). With `normal_classes` (label values) on labelled images,
    `auroc` is the AUROC of the scores separating the other classes
    (anomalies) from the normal ones. `output` writes a CSV (index, file
    when from a folder, label when known, score). `progress` shows the scoring's on standard error.
    `grid` writes a PNG of the 8 most and the 8 least anomalous images, each captioned with its score.
    """
    if (input_dir is None) == (dataset is None):
        raise VaelabError("give exactly one of --input DIR and --dataset NAME")
    if score not in _anomaly.SCORES:
        raise VaelabError(f"unknown score {score!r} (known: {', '.join(_anomaly.SCORES)})")
    for name, value in (("k", k), ("limit", limit), ("chunk", chunk)):
        if value is not None:
            checks.whole(name, value, low=1)
    if batch_size is not None:
        checks.whole("batch_size", batch_size, low=1, high=checks.MAX_BATCH_SIZE)
    checks.seed("seed", seed)
    for path in (output, grid):
        if path is not None:
            check_can_write(path)  # before the scoring, not after it
    model = load_model(run, device=device, weights=weights)
    cfg: RunConfig = model.config
    c, h, w = model.image_shape
    files = None
    if input_dir is not None:
        images, files, labels = _anomaly.read_image_folder(input_dir, model.image_shape)
    else:
        resizable = dataset.startswith(("folder:", "shapes"))
        data = load_images(
            dataset,
            split,
            data_dir=data_dir,
            image_size=h if resizable else None,
            grayscale=dataset.startswith("folder:") and c == 1,
        )
        if data.image_shape != tuple(model.image_shape):
            raise VaelabError(
                f"{dataset} images are {'x'.join(map(str, data.image_shape))} but the run's model "
                f"takes {'x'.join(map(str, model.image_shape))}"
            )
        images, labels = data.images, data.labels
    if limit is not None:
        images, files = images[:limit], files[:limit] if files else None
        labels = labels[:limit] if labels is not None else None
    if score == "iwae":
        checks.iwae_memory(
            k,
            chunk or default_chunk(model.device),
            batch_size or cfg.train.eval_batch_size,
            len(images),
            model.image_shape,
        )
    if cfg.data.binarize == "static":
        images = binarize_static(images)

    auroc, normal = None, None
    if normal_classes is not None:
        normal = tuple(int(v) for v in normal_classes)
        if labels is None:
            raise VaelabError("--normal-classes needs labelled images (a labelled dataset, or class subfolders)")
        anomalous = ~torch.isin(labels, torch.tensor(normal))
        if anomalous.all() or not anomalous.any():
            raise VaelabError(
                f"--normal-classes {','.join(map(str, normal))} leaves "
                f"{'no normal' if anomalous.all() else 'no anomalous'} images to compare"
            )
    scores = _anomaly.anomaly_scores(
        model,
        images,
        score=score,
        k=k,
        chunk=chunk,
        batch_size=batch_size or cfg.train.eval_batch_size,
        seed=seed,
        dynamic_binarize=cfg.data.binarize == "dynamic",
        progress=Reporter("scoring", enabled=progress),
    )
    if normal is not None:
        auroc = _anomaly.auroc(scores, anomalous)
    result = _anomaly.AnomalyResult(scores, score, k if score == "iwae" else None, labels, files, normal, auroc)
    if output is not None:
        result = dataclasses.replace(result, output=_anomaly.write_csv(result, output))
    if grid is not None:
        from .viz.anomaly import write_anomaly_grid  # matplotlib, only when a picture is asked for

        what = "-ELBO" if score == "elbo" else f"-IWAE bound (k={k})"
        result = dataclasses.replace(result, grid=write_anomaly_grid(images, scores, grid, what=what, labels=labels))
    return result


__all__ = ["Run", "anomaly_scores", "evaluate", "load", "presets", "resolve_config", "resume", "train"]


def plot(run: str | Path, **options: Any) -> list[Path]:
    """Every picture of a run into RUN/plots/ (see `vaelab.viz.plot_run` for the options)."""
    from .viz import plot_run

    return plot_run(run, **options)


def report(
    run: str | Path,
    *,
    refresh: bool = False,
    evaluate_missing: bool = True,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    weights: str = "ema",
) -> Path:
    """Write RUN/report.html, drawing the pictures and evaluating first (`progress`: as `evaluate`'s)
    where the run lacks them."""
    from .report import write_report

    path = Path(run)
    load_checkpoint(path, with_optimizer=False)  # a clear error for a folder that is not a run, before any work
    if refresh or not any((path / "plots").glob("*.png")):  # an empty plots/ left by a failure is no plot
        plot(path, device=device, data_dir=data_dir, log=log, weights=weights)
    if evaluate_missing and (refresh or not (path / "eval.json").exists()):
        log("evaluating (writes eval.json) ...")
        evaluate(path, device=device, data_dir=data_dir, log=log, progress=progress, weights=weights)
    return write_report(path, log=log)

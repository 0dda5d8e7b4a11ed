"""Assemble a run: config -> data, model, optimiser, run directory -> the loop. Also resume."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from ..config import RESUMABLE_CHANGES, SECTIONS, RunConfig, apply_overrides, to_dict
from ..errors import VaelabError
from ..evaluation.elbo import evaluate_elbo
from ..models.registry import require_parts
from ..models.vae import VAE, build_model
from ..runtime import place, prepare_device, resolve_precision
from ..viz.grid import save_grid
from .checkpoint import (
    find_checkpoint,
    load_checkpoint,
    load_ema_state,
    load_model_state,
    load_optimizer_state,
    restore_rng,
)
from .data import Splits, prepare_splits
from .device import resolve_device
from .distributed import Dist, from_env, session
from .ema import EMA
from .loop import EpochCallback, StepsCallback, fit
from .optim import auxiliary_optimizer, build_optimizer, main_parameters
from .rundir import RunDir, default_run_dir
from .step import step_kind
from .tensorboard import RECONSTRUCTIONS, TensorBoard, summary_writer_class


def start_run(
    cfg: RunConfig,
    *,
    out: str | Path | None = None,
    data_dir=None,
    callbacks: Iterable[EpochCallback] = (),
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Train a new run described by `cfg`; returns its directory. Data-parallel when started by torchrun."""
    if cfg.train.init_from is not None:  # recorded as an absolute path: the run's config must say which run
        source = str(Path(cfg.train.init_from).expanduser().resolve())
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=source))
    if cfg.train.tensorboard:
        summary_writer_class()  # a missing package is refused before a run folder exists
    with session(cfg.train.device) as (dist, device), contextlib.ExitStack() as hold:
        log = log if dist.is_main else _quiet

        def new_run_dir() -> RunDir:
            run = RunDir(Path(out) if out is not None else default_run_dir(cfg.preset))
            run.check_can_start()  # before any work: a folder of the user's or a finished run is never touched
            return run

        run = dist.from_main(new_run_dir)
        threads = prepare_device(device, cfg.train.threads)
        splits = dist.main_first(lambda: prepare_splits(cfg.data, data_dir))
        torch.manual_seed(cfg.train.seed)  # fixes the initial weights (the training noise is seeded per step)
        model = place(build_model(cfg.model, cfg.objective, splits.train.image_shape), device)
        if cfg.train.init_from is not None:
            init_weights(model, cfg.train.init_from)
        model = dist.sync_batchnorm(model, log)
        optimizer = build_optimizer(main_parameters(model), cfg.train)
        auxiliary = _attach_objective(model, splits, dist)
        ema = EMA(model, cfg.train.ema) if cfg.train.ema is not None else None
        if dist.is_main:  # only now: a run that cannot start leaves no directory behind
            hold.enter_context(run.lock())  # held until the run ends: a second process here is refused
            run.refuse_if_started()  # again, under the lock: another process may have finished a run here meanwhile
            run.start_fresh()
            run.write_config(cfg)
        board_epochs, board_steps = _tensorboard(cfg, run, splits, ema, dist, hold, purge_step=None)
        ranks = f" x {dist.world} ranks" if dist.enabled else ""
        precision = resolve_precision(cfg.train.precision, device, model)
        log(
            f"training {cfg.preset} on {cfg.data.name} ({len(splits.train)} train / {len(splits.val)} "
            f"{splits.val_name} images, {device}, {precision}, {step_kind(model, dist=dist)}{ranks}, {threads}) "
            f"into {run.path}"
        )
        if cfg.train.init_from is not None:
            log(f"starting from the weights of {cfg.train.init_from}")
        fit(
            model,
            optimizer,
            splits,
            cfg,
            run,
            validate=_validation(splits, cfg),
            save_samples=_save_samples,
            callbacks=(*board_epochs, *callbacks),
            steps_callbacks=board_steps,
            show_progress=progress,
            log=log,
            dist=dist,
            ema=ema,
            auxiliary_optimizer=auxiliary,
        )
        return run.path


def resume_run(
    path: str | Path,
    *,
    overrides: dict | None = None,
    data_dir=None,
    callbacks: Iterable[EpochCallback] = (),
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Continue a run from its last checkpoint, exactly where it stopped.

    `overrides` (nested, as `apply_overrides` takes) may only change settings
    that do not alter the results, such as more epochs; anything else is refused.
    The run is locked first (a second process on it is refused), then its
    checkpoint is read, so no other process can have moved it on meanwhile.
    """
    with contextlib.ExitStack() as hold:
        if from_env().is_main:
            checkpoint = find_checkpoint(path)  # a clear error for what is not a run, before the lock marks it
            hold.enter_context(RunDir(checkpoint.parent).lock())
        return _resume_locked(
            path, overrides=overrides, data_dir=data_dir, callbacks=callbacks, progress=progress, log=log
        )


def _resume_locked(
    path: str | Path,
    *,
    overrides: dict | None,
    data_dir,
    callbacks: Iterable[EpochCallback],
    progress: bool,
    log: Callable[[str], None],
) -> Path:
    ckpt = load_checkpoint(path)
    run = RunDir(Path(path) if Path(path).is_dir() else Path(path).parent)
    cfg = apply_overrides(ckpt.config, overrides or {})
    changed = config_diff(ckpt.config, cfg)
    refused = [
        f"{section}.{key} ({old!r} -> {new!r})"
        for (section, key), (old, new) in changed.items()
        if (section, key) not in RESUMABLE_CHANGES
    ]
    if cfg.train.lr_schedule == "cosine" and ("train", "epochs") in changed:
        refused.append("train.epochs (the cosine learning-rate schedule decays over the run's epochs)")
    if refused:
        raise VaelabError(
            f"--resume would change {', '.join(refused)}, which alters the results; start a new run with --out instead"
        )
    if cfg.train.tensorboard:
        summary_writer_class()  # before any work (the run may also be resumed with --no-tensorboard)
    with session(cfg.train.device) as (dist, device), contextlib.ExitStack() as hold:
        log = log if dist.is_main else _quiet
        if ckpt.epoch >= cfg.train.epochs:
            log(f"{run.path} already finished its {cfg.train.epochs} epochs; pass --epochs to train longer")
            return run.path
        limit = cfg.train.time_limit
        if limit is not None and ckpt.progress.batch == 0:  # mid-epoch, the epoch in progress ends first
            spent = dist.from_main(lambda: run.training_seconds(ckpt.epoch))
            if spent >= limit * 60:
                log(
                    f"{run.path} already trained {spent / 60:.1f} min, past its time limit of {limit:g} min; "
                    f"pass a larger --time-limit to train longer"
                )
                return run.path
        threads = prepare_device(device, cfg.train.threads)
        splits = dist.main_first(lambda: prepare_splits(cfg.data, data_dir))
        require_parts(cfg)  # a plugin run imports the module that registered its networks
        model = place(build_model(cfg.model, cfg.objective, ckpt.image_shape), device)
        load_model_state(model, ckpt, where=str(run.checkpoint_path))
        model = dist.sync_batchnorm(model, log)
        optimizer = build_optimizer(main_parameters(model), cfg.train)
        if ckpt.optimizer_state is not None:
            load_optimizer_state(optimizer, ckpt.optimizer_state, where=str(run.checkpoint_path))
            _match_param_layout(optimizer)
        auxiliary = _attach_objective(model, splits, dist)
        if auxiliary is not None:
            if ckpt.auxiliary_optimizer_state is None:
                raise VaelabError(
                    f"{run.checkpoint_path} holds no state of the {cfg.objective.name} objective's own optimiser"
                )
            load_optimizer_state(auxiliary, ckpt.auxiliary_optimizer_state, where=str(run.checkpoint_path))
            _match_param_layout(auxiliary)
        ema = EMA(model, cfg.train.ema) if cfg.train.ema is not None else None
        if ema is not None:
            ema.load_state_dict(load_ema_state(model, ckpt, where=str(run.checkpoint_path)))
        restore_rng(ckpt.rng_state)
        if dist.is_main:
            run.remove_stale_temp_files()
            for repaired in (run.keep_metrics_through(ckpt.epoch), run.keep_steps_through(ckpt.step)):
                if repaired:  # the checkpoint is the truth
                    log(repaired)
            run.write_config(cfg)
        # TensorBoard drops what a stopped process wrote after the checkpoint's step: no step shows twice
        board_epochs, board_steps = _tensorboard(cfg, run, splits, ema, dist, hold, purge_step=ckpt.step + 1)
        images, size = len(splits.train), cfg.train.batch_size
        batches = images // size if cfg.train.drop_last else -(-images // size)  # per epoch, as `Batches` counts
        where = f"batch {ckpt.progress.batch + 1} of {batches} in " if ckpt.progress.batch else ""
        log(
            f"resuming {run.path} at {where}epoch {ckpt.epoch + 1} of {cfg.train.epochs} "
            f"({device}, {resolve_precision(cfg.train.precision, device, model)}, {threads})"
        )
        fit(
            model,
            optimizer,
            splits,
            cfg,
            run,
            validate=_validation(splits, cfg),
            save_samples=_save_samples,
            progress=ckpt.progress,
            callbacks=(*board_epochs, *callbacks),
            steps_callbacks=board_steps,
            show_progress=progress,
            log=log,
            dist=dist,
            ema=ema,
            auxiliary_optimizer=auxiliary,
        )
        return run.path


WEIGHTS = ("ema", "raw")  # what `load_model` can load


def _tensorboard(
    cfg: RunConfig,
    run: RunDir,
    splits: Splits,
    ema: EMA | None,
    dist: Dist,
    hold: contextlib.ExitStack,
    *,
    purge_step: int | None,
) -> tuple[tuple[EpochCallback, ...], tuple[StepsCallback, ...]]:
    """The loop's epoch and steps callbacks that write RUN/tensorboard (rank 0, when the config asks);
    `hold` closes the files when the run ends, however it ends."""
    if not (cfg.train.tensorboard and dist.is_main):
        return (), ()
    board = TensorBoard(
        run.tensorboard_dir,
        purge_step=purge_step,
        images=splits.val.images[:RECONSTRUCTIONS],
        samples=run.sample_path,
        weights=ema.applied if ema is not None else contextlib.nullcontext,
    )
    hold.enter_context(board)
    return (board.epoch,), (board.steps,)


def _validation(splits: Splits, cfg: RunConfig) -> Callable[[VAE], dict]:
    """The loop's validation: `vaelab evaluate`'s ELBO (seeded, analytic KL) of the validation split."""
    return lambda model: evaluate_elbo(
        model,
        splits.val.images,
        batch_size=cfg.train.eval_batch_size,
        dynamic_binarize=cfg.data.binarize == "dynamic",
        seed=cfg.train.seed,
    )


def _save_samples(model: VAE, n: int, seed: int, path: Path) -> None:
    """A grid of n samples drawn with noise seeded `seed`, in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        images = model.sample(n, generator=torch.Generator().manual_seed(seed))
        save_grid(images, path, scale=2 if model.image_shape[-1] <= 32 else 1)
    model.train(was_training)


def init_weights(model: torch.nn.Module, source: str | Path) -> None:
    """Copy another run's trained weights into `model` (`--init-from`): its moving average when it kept one,
    else its weights, and its buffers (BatchNorm statistics). The networks must match (a one-line error names
    the first difference)."""
    ckpt = load_checkpoint(source, with_optimizer=False)
    where = f"--init-from {source}"
    load_model_state(model, ckpt, where=where)
    if ckpt.ema_state:
        averaged = load_ema_state(model, ckpt, where=where)
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(averaged[name])


def _attach_objective(model: VAE, splits: Splits, dist: Dist) -> torch.optim.Optimizer | None:
    """Give the objective what it needs beyond its config, before training: the model to check and the
    training set's size (β-TCVAE's N, `objective.attach`); returns its own optimiser (FactorVAE's
    discriminator's), refused under torchrun, where the discriminator's updates would differ between ranks."""
    attach = getattr(model.objective, "attach", None)
    if attach is not None:
        attach(model, len(splits.train))
    auxiliary = auxiliary_optimizer(model)
    if auxiliary is not None and dist.enabled:
        raise VaelabError(
            f"the {type(model.objective).__name__} objective trains its discriminator in one process: "
            f"it cannot run under torchrun (run it without torchrun)"
        )
    return auxiliary


def _quiet(message: str) -> None:
    """The log of ranks other than 0: they compute the same things, rank 0 tells."""


def _match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Loaded optimiser state (saved contiguous) in the same memory layout as its parameter."""
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def config_diff(old: RunConfig, new: RunConfig) -> dict[tuple[str, str], tuple]:
    """{(section, key): (old, new)} for every setting that differs."""
    a, b = to_dict(old), to_dict(new)
    diff = {}
    for section in SECTIONS:
        for key in set(a.get(section, {})) | set(b.get(section, {})):
            x, y = a.get(section, {}).get(key), b.get(section, {}).get(key)
            if x != y:
                diff[(section, key)] = (x, y)
    return diff


def load_model(run: str | Path, *, device: str = "cpu", weights: str = "ema") -> VAE:
    """The trained model of a run (or checkpoint file), in eval mode, rebuilt from the checkpoint alone.

    `weights="ema"`: the moving average of the weights where the run kept one (train.ema), else the
    weights; "raw": the weights themselves. `model.weights` says which it holds.
    """
    if weights not in WEIGHTS:
        raise VaelabError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    ckpt = load_checkpoint(run, with_optimizer=False)
    require_parts(ckpt.config)  # parts from plugins: the modules the run recorded, imported where needed
    model = build_model(ckpt.config.model, ckpt.config.objective, ckpt.image_shape)
    load_model_state(model, ckpt, where=str(run))
    model.weights = "raw"
    if weights == "ema" and ckpt.ema_state:
        model.load_state_dict(load_ema_state(model, ckpt, where=str(run)), strict=False)
        model.weights = "ema"
    model.config = ckpt.config
    device = resolve_device(device)
    prepare_device(device)
    return model.to(device).eval()

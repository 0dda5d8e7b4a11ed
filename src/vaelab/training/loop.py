"""The training loop: epochs of steps, then validation, samples, metrics and a checkpoint."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from ..config import RunConfig
from ..errors import TrainingStopped, VaelabError
from ..models.noise import step_noise
from ..models.vae import VAE
from ..progress import ProgressBar
from ..runtime import batch_memory_format, resolve_precision
from .batches import Batches
from .checkpoint import Progress, save_checkpoint
from .data import Splits
from .distributed import SINGLE, Dist
from .ema import EMA
from .optim import set_lr
from .rundir import RunDir
from .schedule import lr_at
from .signals import StopRequests
from .step import train_step
from .steplog import StepLog

EpochCallback = Callable[[int, dict, VAE], None]
StepsCallback = Callable[[dict], None]  # a steps.jsonl line with lr, skipped_steps and grad_norm added
Validate = Callable[[VAE], dict]  # model -> {"elbo", "recon", "kl"}: means over the validation split
SaveSamples = Callable[[VAE, int, int, Path], None]  # (model, n, seed, path): n samples drawn with seed, saved
TERMS = ("loss", "elbo", "recon", "kl")  # every objective's; its `extra_terms` (β-TCVAE's mi, tc, dwkl) follow
LOG_EVERY = 50  # batches between two lines of steps.jsonl (each one host sync)


def fit(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    splits: Splits,
    cfg: RunConfig,
    run: RunDir,
    *,
    validate: Validate,
    save_samples: SaveSamples,
    progress: Progress | None = None,
    callbacks: Iterable[EpochCallback] = (),
    steps_callbacks: Iterable[StepsCallback] = (),
    show_progress: bool = True,
    log: Callable[[str], None] = print,
    dist: Dist = SINGLE,
    ema: EMA | None = None,
    auxiliary_optimizer: torch.optim.Optimizer | None = None,
) -> Progress:
    """Train from `progress` (a fresh start when None) to `cfg.train.epochs`, or with `time_limit` until the
    end of the first epoch at which the run's training time (all its epochs' `seconds`, before a resume too)
    reaches it.

    After every epoch: `validate`, one line on the console and in
    metrics.jsonl, a fixed-noise sample grid (`save_samples`), and an atomic
    checkpoint, in that order; with `checkpoint_every`, also every N steps.
    Every `LOG_EVERY` batches, before each checkpoint and at each epoch's end,
    the losses since the last line go to steps.jsonl (`StepLog`): the means of
    `TERMS` and of the objective's `extra_terms`, which metrics.jsonl has as
    train_<name> too. A SIGINT or
    SIGTERM finishes the step in progress, checkpoints and raises
    `TrainingStopped`. Updates with a non-finite loss or gradient are skipped
    (counted); `max_skips` of them in a row stop the run. Under torchrun
    (`dist`), every rank trains on its rows of each batch; only rank 0
    validates, writes files, logs and calls `callbacks` (after each epoch's
    checkpoint) and `steps_callbacks` (with each steps.jsonl line, plus the
    learning rate, the skipped steps so far and the window's mean gradient
    norm before clipping).

    Each step's learning rate is `lr_at` of the step count. With `ema`, the
    step updates it, the checkpoint keeps it, and validation and the sample
    grids use the averaged weights (the model's own are back after them).
    `auxiliary_optimizer` (FactorVAE's discriminator's) goes to every step and into every checkpoint.
    """
    tc = cfg.train
    p = progress or Progress()
    device = model.device
    precision = resolve_precision(tc.precision, device, model)
    train = Batches(
        splits.train.images,
        tc.batch_size,
        device=device,
        shuffle=True,
        drop_last=tc.drop_last,
        dynamic_binarize=cfg.data.binarize == "dynamic",
        seed=tc.seed,
        memory_format=batch_memory_format(model),
        shard=dist,
    )
    step_model, step_rng = dist.wrap(model), torch.Generator(device)
    total_steps = tc.epochs * len(train)  # the schedule's length

    def averaged() -> contextlib.AbstractContextManager:
        return ema.applied() if ema is not None else contextlib.nullcontext()

    # The same noise every epoch (seeded by the run's seed) shows how one set of samples improves (as seed 003 does).
    if dist.is_main and p.epoch == 0 and p.batch == 0 and tc.sample_grid:
        with averaged():
            save_samples(model, tc.sample_grid, tc.seed, run.sample_path(0))
    beta_at = getattr(model.objective, "beta_at", None)  # the KL's weight in force at a step, for the logs
    names = TERMS + tuple(getattr(model.objective, "extra_terms", ()))  # the per-example terms summed, in order
    steps_callbacks = tuple(steps_callbacks) if dist.is_main else ()
    norms: list[float] = []  # the window's gradient norms, kept for `steps_callbacks` only

    def write_steps(line: dict) -> None:
        run.append_steps(line)
        if steps_callbacks:
            extra = {"lr": optimizer.param_groups[0]["lr"], "skipped_steps": p.skipped, "grad_norm": _mean(norms)}
            norms.clear()
            for callback in steps_callbacks:
                callback({**line, **extra})

    steps = StepLog(write_steps if dist.is_main else None, log, dist, beta_at=beta_at, extra=names[len(TERMS) :])
    # the training seconds of the epochs finished before this call (a resume's); rank 0's decide when to stop
    spent = run.training_seconds(p.epoch) if tc.time_limit is not None and dist.is_main else 0.0

    def checkpoint(sums: torch.Tensor | None = None) -> None:
        if sums is not None:  # mid-epoch: the running sums of all ranks (rank 0 carries them on resume)
            p.sums = dist.sum(sums).cpu()
        if dist.is_main:
            save_checkpoint(
                run.checkpoint_path,
                config=cfg,
                image_shape=model.image_shape,
                model=model,
                optimizer=optimizer,
                progress=p,
                ema=ema.state_dict() if ema is not None else None,
                auxiliary_optimizer=auxiliary_optimizer,
            )

    with StopRequests() as stop:
        for epoch in range(p.epoch + 1, tc.epochs + 1):
            model.train()
            # `names` summed over this rank's images of applied steps (rank 0 carries a resume's)
            sums = _resumed_sums(p, names)
            sums = (sums if dist.is_main else torch.zeros_like(sums)).to(device)
            consecutive_skips = 0
            start = time.perf_counter() - p.seconds
            steps.start_epoch(sums, p)
            bar = ProgressBar(
                len(train),
                f"training epoch {epoch}/{tc.epochs}",
                unit="batches",
                initial=p.batch,
                enabled=show_progress and dist.is_main,
            )
            for x in train.epoch(epoch, skip=p.batch):
                n = train.size(p.batch)
                set_lr(optimizer, lr_at(p.step, tc, total_steps))
                with step_noise(step_rng, tc.seed, p.step, dist.rows(n), n):
                    terms, applied = train_step(
                        step_model,
                        optimizer,
                        x,
                        grad_clip=tc.grad_clip,
                        skip_grad_norm=tc.skip_grad_norm,
                        precision=precision,
                        batch_size=n,
                        dist=dist,
                        ema=ema,
                        record_norm=norms.append if steps_callbacks else None,
                        auxiliary_optimizer=auxiliary_optimizer,
                    )
                p.step, p.batch = p.step + 1, p.batch + 1
                if applied:
                    consecutive_skips = 0
                    sums += torch.stack([terms[k] for k in names]).sum(1, dtype=torch.float64)  # 3 operations
                    p.images += n
                else:
                    p.skipped, consecutive_skips = p.skipped + 1, consecutive_skips + 1
                    if consecutive_skips >= tc.max_skips:
                        raise TrainingStopped(
                            f"training diverged: {consecutive_skips} updates in a row had a non-finite (or too "
                            f"large) gradient, at step {p.step}; the last checkpoint in {run.path} is kept. "
                            f"Try a lower --lr or --grad-clip"
                        )
                bar.update()
                if p.batch % LOG_EVERY == 0:  # the only host sync in the epoch, besides the guard
                    line = steps.flush(epoch, p, sums)
                    bar.set_note(f"loss {line['loss']:.2f}" + (f", {p.skipped} skipped" if p.skipped else ""))
                stopping = dist.any(stop.requested is not None, device)  # every rank stops after the same step
                if stopping or (tc.checkpoint_every and p.step % tc.checkpoint_every == 0):
                    p.seconds = time.perf_counter() - start
                    steps.flush(epoch, p, sums)  # steps.jsonl is complete up to every checkpoint
                    checkpoint(sums)
                    steps.restart(sums, p)
                    if stopping:
                        raise TrainingStopped(
                            f"stopped by {stop.requested or 'a signal to another rank'} at "
                            f"epoch {epoch}, step {p.step}; continue with: "
                            f"vaelab train --resume {run.path}",
                            exit_code=stop.exit_code or 143,
                        )
            seconds = time.perf_counter() - start
            spent += seconds
            bar.close()
            steps.flush(epoch, p, sums)
            sums = dist.sum(sums)
            dist.check_in_sync(model)
            if dist.is_main:
                with averaged():
                    val = validate(model)
                record = _epoch_record(epoch, p, sums, seconds, val, splits.val_name, beta_at, names)
                log(format_epoch(record))
                run.append_metrics(record)
                if tc.sample_grid:
                    with averaged():
                        save_samples(model, tc.sample_grid, tc.seed, run.sample_path(epoch))
            p.epoch, p.batch, p.seconds, p.images = epoch, 0, 0.0, 0
            p.sums = torch.zeros(len(names), dtype=torch.float64)
            checkpoint()
            if dist.is_main:
                for callback in callbacks:
                    callback(epoch, record, model)
            if tc.time_limit is not None and epoch < tc.epochs:
                if dist.any(dist.is_main and spent >= tc.time_limit * 60, device):  # rank 0's clock: all stop here
                    if dist.is_main:
                        log(_time_limit_line(tc.time_limit, epoch, tc.epochs, spent, run.path))
                    break
    return p


def _resumed_sums(p: Progress, names: tuple[str, ...]) -> torch.Tensor:
    """The running sums of `names` (float64) the epoch in progress goes on from. A checkpoint of a vaelab before
    the extra terms holds loss, elbo, recon and kl only: the extra terms' sums are then NaN (unknown), and stay
    so in steps.jsonl, metrics.jsonl and checkpoints until that epoch ends."""
    saved, width = p.sums.double(), len(names)
    if len(saved) > width:
        raise VaelabError(
            f"the checkpoint holds running sums of {len(saved)} terms, more than this objective's {width} "
            f"({', '.join(names)}): it is damaged or was saved for another objective"
        )
    missing = torch.full((width - len(saved),), math.nan if p.images else 0.0, dtype=torch.float64)
    return torch.cat([saved, missing])


def _mean(values: list[float]) -> float:
    """The mean of the finite values (NaN when there are none)."""
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else float("nan")


def _time_limit_line(minutes: float, epoch: int, epochs: int, spent: float, path: Path) -> str:
    return (
        f"time limit: {minutes:g} min of training reached after epoch {epoch} of {epochs} ({spent / 60:.1f} min); "
        f"continue with: vaelab train --resume {path} --time-limit M (M > {minutes:g})"
    )


def _epoch_record(
    epoch: int,
    p: Progress,
    sums: torch.Tensor,
    seconds: float,
    val: dict,
    val_split: str,
    beta_at: Callable[[int], float] | None = None,
    names: tuple[str, ...] = TERMS,
) -> dict:
    """The metrics line of a finished epoch: training means (`sums` of `names`; train_<name> for the terms past
    `TERMS`), the validation ELBO, timing, and (`train_beta`) the KL's weight in force at the epoch's last step."""
    images = p.images
    loss, elbo, recon, kl, *extra = (v / images if images else float("nan") for v in sums.tolist())
    beta = {} if beta_at is None else {"train_beta": beta_at(p.step - 1)}
    groups = sorted((int(key[3:]), value) for key, value in val.items() if key.startswith("kl_") and key[3:].isdigit())
    per_group = {"val_kl_groups": [value for _, value in groups]} if groups else {}  # a hierarchy's, top first
    return {
        "epoch": epoch,
        "step": p.step,
        "skipped_steps": p.skipped,
        "train_loss": loss,
        "train_elbo": elbo,
        "train_recon": recon,
        "train_kl": kl,
        **{f"train_{name}": value for name, value in zip(names[len(TERMS) :], extra, strict=True)},
        **beta,
        "val_split": val_split,
        "val_elbo": val["elbo"],
        "val_recon": val["recon"],
        "val_kl": val["kl"],
        **per_group,
        "seconds": seconds,
        "images_per_s": images / seconds if seconds > 0 else float("nan"),
    }


def format_epoch(r: dict) -> str:
    """`epoch N  train -ELBO …  [β …  ]val ELBO …  (recon …, KL …[ in G groups, the least …])  T s  R img/s`
    (β where it is not 1; the groups of a hierarchy)."""
    skipped = f"  {r['skipped_steps']} skipped" if r.get("skipped_steps") else ""
    beta = f"β {r['train_beta']:.2f}  " if r.get("train_beta", 1) != 1 else ""
    groups = r.get("val_kl_groups")
    groups = f" in {len(groups)} groups, the least {min(groups):.2f}" if groups else ""
    return (
        f"epoch {r['epoch']}  train -ELBO {-r['train_elbo']:.2f}  {beta}{r['val_split']} ELBO {r['val_elbo']:.2f}  "
        f"(recon {r['val_recon']:.2f}, KL {r['val_kl']:.2f}{groups})  {r['seconds']:.1f} s  "
        f"{r['images_per_s']:.0f} img/s{skipped}"
    )

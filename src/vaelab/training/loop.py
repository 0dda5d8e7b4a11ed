"""The training loop: epochs of steps, then validation, samples, metrics and a checkpoint."""

from __future__ import annotations

import time
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..evaluation.elbo import evaluate_elbo
from ..models.vae import VAE
from ..viz.grid import save_grid
from .batches import Batches
from .checkpoint import save_checkpoint
from .data import Splits
from .rundir import RunDir
from .step import train_step

EpochCallback = Callable[[int, dict, VAE], None]


def fit(model: VAE, optimizer: torch.optim.Optimizer, splits: Splits, cfg: RunConfig, run: RunDir, *,
        start_epoch: int = 0, step: int = 0, callbacks: Iterable[EpochCallback] = (),
        progress: bool = True, log: Callable[[str], None] = print) -> int:
    """Train from `start_epoch` to `cfg.train.epochs`; returns the number of steps taken in total.

    After every epoch: validation ELBO, one line on the console and in
    metrics.jsonl, a fixed-noise sample grid, and an atomic checkpoint, in
    that order (so a crash can lose at most the epoch in progress).
    """
    tc = cfg.train
    device = model.device
    dynamic = cfg.data.binarize == "dynamic"
    train = Batches(splits.train.images, tc.batch_size, device=device, shuffle=True,
                    drop_last=tc.drop_last, dynamic_binarize=dynamic, seed=tc.seed)
    # The same noise every epoch shows how one set of samples improves (as seed 003 does).
    fixed_z = model.prior.sample(tc.sample_grid, generator=torch.Generator().manual_seed(tc.seed)).to(device)
    if start_epoch == 0 and tc.sample_grid:
        _save_samples(model, fixed_z, run.sample_path(0))

    for epoch in range(start_epoch + 1, tc.epochs + 1):
        model.train()
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, elbo, recon, kl summed over images
        start = time.perf_counter()
        bar = tqdm(train.epoch(epoch), total=len(train), desc=f"epoch {epoch}/{tc.epochs}", unit="batch",
                   leave=False, disable=None if progress else True)
        for i, x in enumerate(bar):
            terms = train_step(model, optimizer, x)
            sums += torch.stack([terms[k].sum() for k in ("loss", "elbo", "recon", "kl")]).double()
            step += 1
            if i % 50 == 0 and not bar.disable:  # the only host sync in the epoch
                bar.set_postfix(loss=f"{terms['loss'].mean().item():.2f}")
        loss, elbo, recon, kl = (sums / train.num_images).tolist()
        seconds = time.perf_counter() - start

        val = evaluate_elbo(model, splits.val.images, batch_size=tc.eval_batch_size,
                            dynamic_binarize=dynamic, seed=tc.seed)
        record = {
            "epoch": epoch, "step": step,
            "train_loss": loss, "train_elbo": elbo, "train_recon": recon, "train_kl": kl,
            "val_split": splits.val_name, "val_elbo": val["elbo"], "val_recon": val["recon"], "val_kl": val["kl"],
            "seconds": seconds, "images_per_s": train.num_images / seconds,
        }
        log(format_epoch(record))
        run.append_metrics(record)
        if tc.sample_grid:
            _save_samples(model, fixed_z, run.sample_path(epoch))
        save_checkpoint(run.checkpoint_path, config=cfg, image_shape=model.image_shape, model=model,
                        optimizer=optimizer, epoch=epoch, step=step)
        for callback in callbacks:
            callback(epoch, record, model)
    return step


def format_epoch(r: dict) -> str:
    """`epoch N  train -ELBO …  val ELBO …  (recon …, KL …)  T s  R img/s`."""
    return (f"epoch {r['epoch']}  train -ELBO {-r['train_elbo']:.2f}  {r['val_split']} ELBO {r['val_elbo']:.2f}  "
            f"(recon {r['val_recon']:.2f}, KL {r['val_kl']:.2f})  {r['seconds']:.1f} s  "
            f"{r['images_per_s']:.0f} img/s")


def _save_samples(model: VAE, z: torch.Tensor, path) -> None:
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        save_grid(model.decode(z), path, scale=2 if model.image_shape[-1] <= 32 else 1)
    model.train(was_training)

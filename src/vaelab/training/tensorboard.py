"""TensorBoard event files of a run (RUN/tensorboard/), from the same numbers as steps.jsonl and metrics.jsonl.

With `train.tensorboard` (`vaelab train --tensorboard`) the trainer opens a
`TensorBoard` on rank 0 and gives the loop two of its methods as callbacks:
`steps` gets each steps.jsonl line (with the learning rate, the skipped
steps and the gradient norm added) and `epoch` each metrics.jsonl record.
The x axis is the training step everywhere, so the two line up. Tags:

  train/loss, train/recon, train/kl, train/beta, train/lr, train/grad_norm,
  train/skipped_steps, train/images_per_s    every steps.jsonl line (the window's means)
  epoch/train_loss, epoch/train_elbo, epoch/train_recon, epoch/train_kl, epoch/train_beta,
  epoch/skipped_steps, epoch/seconds, epoch/images_per_s    every metrics.jsonl record
  train/mi, train/tc, train/dwkl, epoch/train_mi, ...    an objective's extra terms (β-TCVAE's; FactorVAE's tc)
  val/elbo, val/recon, val/kl, val/kl_1 .. val/kl_L (a hierarchy's groups, top first)
  images/samples            the epoch's fixed-noise sample grid (RUN/samples/epoch_NNNN.png)
  images/reconstructions    the first validation images (top row) over their reconstructions

A resumed run appends to the same folder with `purge_step` just past its
checkpoint's step: what a stopped or killed process wrote after that
checkpoint is dropped by TensorBoard, so no step shows twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import VaelabError
from ..models.vae import VAE, as_float_images

INSTALL = "pip install 'vaelab[tensorboard]'"
RECONSTRUCTIONS = 8  # validation images shown with their reconstructions after each epoch


def summary_writer_class() -> type:
    """torch's SummaryWriter; a one-line error when the optional tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it; it is the `tensorboard` extra)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise VaelabError(f"--tensorboard needs the tensorboard package: {INSTALL}") from None
    return SummaryWriter


class TensorBoard:
    """One run's event files; a context manager that closes (flushes) them, errors included.

    `purge_step`: the first step this process writes (a resume's); `images`: uint8 validation images
    (N, C, H, W) to reconstruct after each epoch; `samples(epoch)`: the path of that epoch's sample
    grid; `weights()`: a context in which the model holds the weights it is judged by (the EMA's).
    """

    def __init__(
        self,
        folder: Path,
        *,
        purge_step: int | None = None,
        images: torch.Tensor | None = None,
        samples: Callable[[int], Path] | None = None,
        weights: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> None:
        self.writer = summary_writer_class()(log_dir=str(folder), purge_step=purge_step)
        self.images = images if images is not None and len(images) else None
        self.samples, self.weights = samples, weights

    def __enter__(self) -> TensorBoard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.writer.close()

    def steps(self, line: dict) -> None:
        """A steps.jsonl line (plus lr, skipped_steps, grad_norm): `train/<name>` at its step."""
        for key, value in line.items():
            if key not in ("step", "epoch"):
                self.writer.add_scalar(f"train/{key}", value, line["step"])
        self.writer.flush()  # a line precedes every checkpoint: what a resume keeps is on disk (one small write)

    def epoch(self, epoch: int, record: dict, model: VAE) -> None:
        """A metrics.jsonl record as scalars, the epoch's sample grid and reconstructions, at the record's step."""
        step = record["step"]
        for tag, value in _epoch_scalars(record):
            self.writer.add_scalar(tag, value, step)
        if self.samples is not None and self.samples(epoch).is_file():
            with Image.open(self.samples(epoch)) as grid:
                self.writer.add_image("images/samples", np.asarray(grid.convert("RGB")), step, dataformats="HWC")
        if self.images is not None:
            self.writer.add_images("images/reconstructions", self._reconstructions(model), step)
        self.writer.flush()

    def _reconstructions(self, model: VAE) -> torch.Tensor:
        """(2N, C, H, W) in [0, 1]: the images, then their reconstructions (posterior means), in eval mode."""
        was_training = model.training
        model.eval()
        x = as_float_images(self.images)
        with self.weights(), torch.inference_mode():
            out = model.reconstruct(x).float().cpu()
        model.train(was_training)
        return torch.cat([x, out]).clamp(0, 1)


def _epoch_scalars(record: dict) -> list[tuple[str, float]]:
    """val_x -> val/x (val_kl_groups -> val/kl_1 ..), other numbers -> epoch/x; epoch and step are the axis."""
    scalars = []
    for key, value in record.items():
        if key == "val_kl_groups":
            scalars += [(f"val/kl_{i}", v) for i, v in enumerate(value, start=1)]
        elif key not in ("epoch", "step") and isinstance(value, int | float) and not isinstance(value, bool):
            scalars.append((f"val/{key[4:]}" if key.startswith("val_") else f"epoch/{key}", value))
    return scalars

"""Anomaly scores: how badly a trained VAE explains each image, and the AUROC when labels say what is normal.

score = -ELBO (one z per image, analytic KL) or -IWAE_K (tighter, less noisy,
K times the cost), in nats: higher means more anomalous. Scores of images
with different sizes or likelihoods are not comparable.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import folder
from ..errors import VaelabError
from ..files import write_text
from ..models.vae import VAE
from ..progress import QUIET, Reporter
from .scores import elbo_per_image, iwae_per_image

SCORES = ("elbo", "iwae")


def anomaly_scores(
    model: VAE,
    images: torch.Tensor,
    *,
    score: str = "elbo",
    k: int = 100,
    chunk: int | None = None,
    batch_size: int = 1000,
    seed: int = 0,
    dynamic_binarize: bool = False,
    progress: Reporter = QUIET,
) -> torch.Tensor:
    """-ELBO or -IWAE_k of each uint8 image (N, C, H, W) in nats: (N,), higher = more anomalous."""
    if score == "elbo":
        return -elbo_per_image(
            model, images, batch_size=batch_size, seed=seed, dynamic_binarize=dynamic_binarize, progress=progress
        )
    if score == "iwae":
        return -iwae_per_image(
            model,
            images,
            k,
            chunk=chunk,
            batch_size=batch_size,
            seed=seed,
            dynamic_binarize=dynamic_binarize,
            progress=progress,
        )
    raise ValueError(f"unknown score {score!r} (known: {', '.join(SCORES)})")


def auroc(scores, positive) -> float:
    """Area under the ROC curve of `scores` separating `positive` (True) from negative items.

    The Mann-Whitney statistic from average ranks: the probability that a
    random positive scores higher than a random negative, ties counting 1/2.
    O(N log N); both classes must be present.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(positive, dtype=bool).ravel()
    if s.shape != pos.shape:
        raise ValueError(f"{s.shape[0]} scores but {pos.shape[0]} labels")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both positive and negative items")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last item of each distinct value
    average_rank = ends - (counts - 1) / 2.0  # tied items share the mean of their ranks
    rank_sum = average_rank[inverse][pos].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def read_image_folder(
    path: str | os.PathLike, image_shape: tuple[int, int, int]
) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
    """Every image under `path` (as the folder: dataset finds them), as uint8 (N, C, H, W) of `image_shape`,
    with their relative file names and, when all sit in subfolders, subfolder labels (sorted names)."""
    c, h, w = image_shape
    if c not in (1, 3) or h != w:
        raise VaelabError(f"cannot read image files into shape {c}x{h}x{w} (need 1 or 3 channels, square)")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise VaelabError(f"--input {path}: not a folder")
    files = folder.find_images(root)
    if not files:
        raise VaelabError(f"--input {path}: no images ({', '.join(sorted(folder.EXTENSIONS))}) found")
    images, _ = folder.read_images(
        root, files, size=h, grayscale=c == 1, where=f"--input {path}", hint="remove or replace it"
    )
    labels, _ = folder.subfolder_labels(files)
    return images, [str(f) for f in files], labels


@dataclass(frozen=True)
class AnomalyResult:
    """Scores of a set of images, and the AUROC when normal classes were named."""

    scores: torch.Tensor  # (N,) nats, higher = more anomalous
    score: str  # "elbo" | "iwae"
    k: int | None  # samples of the IWAE bound (None for elbo)
    labels: torch.Tensor | None  # (N,) when known
    files: list[str] | None  # relative file names for --input
    normal_classes: tuple[int, ...] | None
    auroc: float | None  # anomalies (labels not in normal_classes) vs normal images
    output: Path | None = None  # the CSV written, if any
    grid: Path | None = None  # the picture of the most and least anomalous images, if any

    def csv_text(self) -> str:
        """index[,file][,label],score: one row per image; a file name holding a newline or comma is quoted
        (csv), and bytes that are not UTF-8 appear escaped (\\xff), so the text always encodes as UTF-8."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(
            ["index"] + (["file"] if self.files else []) + (["label"] if self.labels is not None else []) + ["score"]
        )
        for i, value in enumerate(self.scores.tolist()):
            writer.writerow(
                [i]
                + ([_utf8_name(self.files[i])] if self.files else [])
                + ([int(self.labels[i])] if self.labels is not None else [])
                + [f"{value:.4f}"]
            )
        return buf.getvalue()


def write_csv(result: AnomalyResult, path: str | os.PathLike) -> Path:
    """Write the scores as CSV (UTF-8) through `vaelab.files.write_text`: atomically to a file, or to
    standard output for `-`; returns the path written."""
    return write_text(path, result.csv_text())


def _utf8_name(name: str) -> str:
    """A file name as found on disk, its bytes that are not UTF-8 written as \\xNN (as `files.display_name`)."""
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate that no name read from the disk holds
        raw = name.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")

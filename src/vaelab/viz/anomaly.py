"""`vaelab anomaly --grid`: the most and the least anomalous images, in two labelled rows, each with its score."""

from __future__ import annotations

from pathlib import Path

import torch

from .figures import Block, image_figure, save_figure

EXTREMES = 8  # images in each row


def write_anomaly_grid(
    images: torch.Tensor,
    scores: torch.Tensor,
    path: str | Path,
    *,
    what: str,
    labels: torch.Tensor | None = None,
    count: int = EXTREMES,
) -> Path:
    """Write a PNG of the `count` highest-scoring images (most anomalous first) over the `count` lowest (least
    anomalous first), each captioned with its score and, when known, its label.

    images: the scored uint8 images (N, C, H, W); scores: (N,), higher = more anomalous; what: the score's
    name for the title ("-ELBO", "-IWAE bound (k=100)").
    """
    n = len(scores)
    count = max(1, min(count, n // 2))  # fewer than 2·count images: the rows share none (unless there is one)
    order = scores.argsort(descending=True, stable=True)
    rows = [("most anomalous", order[:count]), ("least anomalous", order.flip(0)[:count])]
    blocks = []
    for name, picked in rows:
        captions = [
            f"{float(scores[i]):.1f}" + (f"\nlabel {int(labels[i])}" if labels is not None else "")
            for i in picked.tolist()
        ]
        blocks.append(Block(images[picked].float().div(255.0), count, [name], captions))
    title = (
        f"The {count} most and {count} least anomalous of {n} images\nscore: {what} in nats, higher = more anomalous"
    )
    return save_figure(image_figure(blocks, title=title), path)

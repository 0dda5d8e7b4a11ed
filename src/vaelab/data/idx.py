"""Read the gzipped IDX files of MNIST and Fashion-MNIST.

IDX layout (big-endian): a 4-byte magic number whose last byte is the number
of dimensions (0x00000803 = 2051 for images, 0x00000801 = 2049 for labels),
one 4-byte size per dimension, then the unsigned bytes in row-major order.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError

IMAGES_MAGIC = 2051  # ubyte, 3 dims: (N, H, W)
LABELS_MAGIC = 2049  # ubyte, 1 dim: (N,)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array stored in the gzipped IDX file `path`, whose magic must be `magic`."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise VaelabError(f"{path}: not a readable gzip file ({e}); delete it or replace it") from None
    found = int.from_bytes(raw[:4], "big")
    if len(raw) >= 4 and found != magic:
        raise VaelabError(f"{path}: not an IDX file of this kind (magic number {found}, expected {magic})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise VaelabError(f"{path}: truncated IDX file ({len(raw)} bytes, the header alone needs {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(dims))
    if len(raw) != header + count:
        raise VaelabError(
            f"{path}: IDX size mismatch: dimensions {dims} need {header + count} bytes, "
            f"the file holds {len(raw)} (truncated or corrupt); delete it or replace it"
        )
    # Copy: frombuffer over `bytes` is read-only, torch wants a writable array.
    return np.frombuffer(raw, dtype=np.uint8, count=count, offset=header).reshape(dims).copy()


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 from one pair of IDX files."""
    images = read_idx(images_path, IMAGES_MAGIC)  # (N, H, W)
    labels = read_idx(labels_path, LABELS_MAGIC)  # (N,)
    if labels.shape[0] != images.shape[0]:
        raise VaelabError(
            f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path.name}"
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise VaelabError(f"{labels_path}: label {int(labels.max())} out of range 0..{num_classes - 1}")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()

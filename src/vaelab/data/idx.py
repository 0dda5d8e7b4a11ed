"""Read the gzipped IDX files of MNIST and Fashion-MNIST.

IDX layout (big-endian): a 4-byte magic number whose last byte is the number
of dimensions (0x00000803 = 2051 for images, 0x00000801 = 2049 for labels),
one 4-byte size per dimension, then the unsigned bytes in row-major order.

The header is trusted for nothing: the body is decompressed in chunks and
never past what the header's dimensions need (plus one byte, to see extra
data), so a header claiming terabytes or a gzip bomb cannot exhaust memory;
a body that is shorter or longer than the dimensions say is an error.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError

IMAGES_MAGIC = 2051  # ubyte, 3 dims: (N, H, W)
LABELS_MAGIC = 2049  # ubyte, 1 dim: (N,)
_CHUNK = 1 << 20


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array stored in the gzipped IDX file `path`, whose magic must be `magic`."""
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(header_size)
            found = int.from_bytes(header[:4], "big")
            if len(header) >= 4 and found != magic:
                raise VaelabError(f"{path}: not an IDX file of this kind (magic number {found}, expected {magic})")
            if len(header) < header_size:
                raise VaelabError(
                    f"{path}: truncated IDX file ({len(header)} bytes, the header alone needs {header_size})"
                )
            dims = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
            count = math.prod(dims)  # exact Python int: no overflow for any header
            body = _read_at_most(f, count + 1)  # one more than needed, to detect extra bytes
    except VaelabError:
        raise
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        reason = " ".join(str(e).split())
        raise VaelabError(f"{path}: not a readable gzip file ({reason}); delete it or replace it") from None
    if len(body) != count:
        held = f"{header_size + len(body)}{' or more' if len(body) > count else ''}"
        raise VaelabError(
            f"{path}: IDX size mismatch: dimensions {dims} need {header_size + count} bytes, "
            f"the file holds {held} (truncated or corrupt); delete it or replace it"
        )
    if count == 0:
        raise VaelabError(f"{path}: IDX file holds no data (dimensions {dims}); delete it or replace it")
    # bytearray: numpy gets a writable buffer, which torch wants, without a copy.
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _read_at_most(f: gzip.GzipFile, limit: int) -> bytearray:
    """Up to `limit` decompressed bytes, read in chunks so memory follows the data, not the header."""
    data = bytearray()
    while len(data) < limit:
        chunk = f.read(min(_CHUNK, limit - len(data)))
        if not chunk:
            break
        data += chunk
    return data  # an empty read comes only after gzip has checked the CRC and length trailer


def read_idx_pair(
    images_path: Path, labels_path: Path, num_classes: int, image_size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 from one pair of IDX files.

    image_size: the (H, W) the images must have; None accepts any.
    """
    images = read_idx(images_path, IMAGES_MAGIC)  # (N, H, W)
    if image_size is not None and images.shape[1:] != tuple(image_size):
        h, w = image_size
        raise VaelabError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, this dataset's are {h}x{w}; "
            f"delete it or replace it"
        )
    labels = read_idx(labels_path, LABELS_MAGIC)  # (N,)
    if labels.shape[0] != images.shape[0]:
        raise VaelabError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path.name}")
    if int(labels.max()) >= num_classes:
        raise VaelabError(f"{labels_path}: label {int(labels.max())} out of range 0..{num_classes - 1}")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()

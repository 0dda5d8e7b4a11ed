"""Writers of tiny dataset files for the data tests (imported by the tests and conftest)."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import socket
import struct
from pathlib import Path

import numpy as np


def closed_port() -> int:
    """A localhost port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Uncompressed IDX bytes of a uint8 array (magic 0x0800 + ndim unless given)."""
    header = struct.pack(">I", magic if magic is not None else 0x0800 + array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same bytes every time, so md5s are stable.
    path.write_bytes(gzip.compress(idx_bytes(array, magic), mtime=0))
    return path


def write_mnist_like(directory: Path, n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny valid MNIST-layout files (28x28 images, as the loader demands) in `directory`; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for name, array in arrays.items():
        write_idx(directory / name, array)
    return arrays


def write_cifar_like(batch_dir: Path, per_batch: int = 3, label_names: list[bytes] | None = None, seed: int = 0):
    """Tiny CIFAR-10 python-layout batches (pickle protocol 2, byte keys); returns {file: (data, labels)}."""
    rng = np.random.default_rng(seed)
    batch_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": [b"x.png"] * per_batch}
        (batch_dir / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = (data, labels)
    if label_names is not None:
        meta = {b"num_cases_per_batch": per_batch, b"label_names": label_names, b"num_vis": 3072}
        (batch_dir / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written

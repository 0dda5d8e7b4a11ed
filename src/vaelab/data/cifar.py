"""CIFAR-10, python layout: `ROOT/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`.

When batch files are missing but `ROOT/cifar10/cifar-10-python.tar.gz` is there
(or can be downloaded), it is md5-checked and extracted: every member is
checked first (only regular files and folders under `cifar-10-batches-py/`),
then extracted with tarfile's "data" filter into a temporary folder and moved
into place.

The batches are pickles, and unpickling can run arbitrary code, so they are
read with `_CifarUnpickler`, which admits only the few globals these files
use and refuses everything else.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..errors import VaelabError
from .download import ensure_file
from .imageset import ImageSet

NAME = "cifar10"
BATCH_DIR = "cifar-10-batches-py"
TAR_NAME = "cifar-10-python.tar.gz"
META_FILE = "batches.meta"
SPLIT_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (3, 32, 32)

try:  # numpy >= 2 (and 1.26, which ships the alias for pickles)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - older numpy
    from numpy.core.multiarray import _reconstruct


def _latin1_encode(text: object, encoding: object) -> bytes:
    # Python 3 pickles `bytes` at protocol 2 as _codecs.encode(str, "latin1"); admit that form only.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is admitted only as (str, 'latin1')")
    return text.encode("latin1")


class _CifarUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals a CIFAR-10 batch needs."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def __init__(self, file, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise VaelabError(
                f"{self.path}: refused to unpickle {module}.{name}: not a CIFAR-10 batch "
                f"(loading it could run code); delete it or replace it"
            ) from None


def load_pickle(path: Path) -> object:
    """Unpickle a CIFAR-10 file with the restricted unpickler."""
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(f, path).load()
    except VaelabError:
        raise
    except Exception as e:  # a corrupt pickle can raise almost anything
        raise VaelabError(f"{path}: not a readable CIFAR-10 pickle ({type(e).__name__}: {e})") from None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 3072) uint8 and labels (N,) int64 of one batch file."""
    batch = load_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise VaelabError(f"{path}: not a CIFAR-10 batch (needs a dict with keys b'data' and b'labels')")
    data = batch[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        shape = getattr(data, "shape", None)
        raise VaelabError(f"{path}: b'data' must be a (N, 3072) uint8 array, got {type(data).__name__} {shape}")
    try:
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError):
        raise VaelabError(f"{path}: b'labels' is not a list of integers") from None
    if labels.shape != (data.shape[0],):
        raise VaelabError(f"{path}: {labels.size} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise VaelabError(f"{path}: labels out of range 0..{len(CLASS_NAMES) - 1}")
    return data, labels


def read_class_names(batch_dir: Path) -> tuple[str, ...]:
    """Label names from batches.meta; the standard ten names when the file is absent."""
    path = batch_dir / META_FILE
    if not path.is_file():
        return CLASS_NAMES
    meta = load_pickle(path)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not (isinstance(names, list) and len(names) == len(CLASS_NAMES) and all(isinstance(n, bytes) for n in names)):
        raise VaelabError(f"{path}: b'label_names' must list {len(CLASS_NAMES)} byte strings")
    return tuple(n.decode("utf-8", "replace") for n in names)


def missing_files(directory: Path) -> list[str]:
    """Batch files (relative to `directory`) that are absent; none when the tar can supply them."""
    missing = [
        f"{BATCH_DIR}/{name}"
        for names in SPLIT_FILES.values()
        for name in names
        if not (directory / BATCH_DIR / name).is_file()
    ]
    return [] if missing and (directory / TAR_NAME).is_file() else missing


def load_cifar10(directory: Path, split: str, *, download: bool) -> ImageSet:
    """CIFAR-10 `split` from `directory` (= ROOT/cifar10): images (N, 3, 32, 32) uint8."""
    batch_dir = directory / BATCH_DIR
    needed = SPLIT_FILES[split]
    absent = [name for name in needed if not (batch_dir / name).is_file()]
    if absent:
        if not download and not (directory / TAR_NAME).is_file():
            raise VaelabError(
                f"{NAME}: missing {BATCH_DIR}/{absent[0]} in {directory}{os.sep} and no {TAR_NAME} "
                f"to extract it from (download disabled); put the files there or pass --data-dir"
            )
        extract_batches(ensure_file(NAME, TAR_NAME, directory, download=download), directory)
    batches = [read_batch(batch_dir / name) for name in needed]
    data = np.concatenate([d for d, _ in batches])  # (N, 3072): 1024 red, 1024 green, 1024 blue
    labels = np.concatenate([l for _, l in batches])
    return ImageSet(
        images=torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE)),  # (N, 3, 32, 32)
        labels=torch.from_numpy(labels),
        class_names=read_class_names(batch_dir),
    )


def extract_batches(tar_path: Path, directory: Path) -> None:
    """Extract `cifar-10-batches-py/` from the official tar into `directory`, safely."""
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(tar_path, member)
            tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".extract-"))
            try:
                tar.extractall(tmp, members=members, filter="data")
                target = directory / BATCH_DIR
                target.mkdir(exist_ok=True)
                for path in sorted((tmp / BATCH_DIR).iterdir()):
                    if path.is_file():
                        os.replace(path, target / path.name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise VaelabError(f"{tar_path}: cannot extract into {directory}{os.sep} ({e})") from None


def _check_member(tar_path: Path, member: tarfile.TarInfo) -> None:
    parts = PurePosixPath(member.name).parts
    inside = len(parts) in (1, 2) and parts[0] == BATCH_DIR and ".." not in parts
    if not inside or not (member.isfile() or member.isdir()):
        raise VaelabError(
            f"{tar_path}: unexpected entry {member.name!r} (only files under {BATCH_DIR}/ are allowed); "
            f"not the official CIFAR-10 archive"
        )

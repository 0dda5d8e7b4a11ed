"""CIFAR-10, python layout: `ROOT/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`.

A test split stored sorted by class (as a rebuild from per-class folders is) is loaded in one fixed
shuffled order, so that any first N test images are a sample of every class.

When batch files are missing but `ROOT/cifar10/cifar-10-python.tar.gz` is there
(or can be downloaded), it is md5-checked and extracted: every member is
checked first (only regular files and folders under `cifar-10-batches-py/`),
then extracted with tarfile's "data" filter into a temporary folder and moved
into place.

The batches are pickles, and unpickling can run arbitrary code, so they are
read with `_CifarUnpickler`, which admits only the few globals these files
use and refuses everything else. Even numpy's own unpickling is not trusted
with the file's contents (numpy 2.4's dtype.__setstate__ crashes the process
on a malformed state tuple, numpy#30476): numpy.dtype and numpy's
_reconstruct resolve to stand-ins that check the pickled state field by
field and build the array with np.frombuffer, whose byte count must match
the shape.
"""

from __future__ import annotations

import math
import os
import pickle
import re
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
MAX_MEMBER_BYTES = 64 << 20  # a batch file is 31 MB; refuse anything that would fill the disk
TEST_ORDER_SEED = 10  # the fixed permutation of a test split stored sorted by class (`load_cifar10`)


def _latin1_encode(text: object, encoding: object) -> bytes:
    # Python 3 pickles `bytes` at protocol 2 as _codecs.encode(str, "latin1"); admit that form only.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is admitted only as (str, 'latin1')")
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    # Python 3 pickles b"" at protocol 2 as builtins.bytes(); never bytes(n), which allocates n bytes.
    if args:
        raise pickle.UnpicklingError("bytes() is admitted only without arguments")
    return b""


class _NdarrayType:
    """Stands for numpy.ndarray in a pickle: only `_PickledArray` accepts it, and it cannot be called."""


# The plain number types a batch may hold, with an optional byte order.
_PLAIN_DTYPE = re.compile(r"[<>|=]?[biuf][1248]")


class _PickledDtype:
    """numpy.dtype(spec, align, copy) + __setstate__(state), as numpy pickles a dtype, checked."""

    def __init__(self, spec: object, align: object = False, copy: object = False) -> None:
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not (isinstance(spec, str) and _PLAIN_DTYPE.fullmatch(spec)):
            raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not a plain number type")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state: object) -> None:
        # numpy writes (3, byteorder, None, None, None, -1, -1, 0) for a plain number type.
        if not (
            isinstance(state, tuple)
            and len(state) == 8
            and state[0] == 3
            and state[1] in ("|", "<", ">", "=", b"|", b"<", b">", b"=")
            and state[2:] == (None, None, None, -1, -1, 0)
        ):
            raise pickle.UnpicklingError("numpy dtype state is not that of a plain number type")
        order = state[1].decode() if isinstance(state[1], bytes) else state[1]
        self.dtype = self.dtype.newbyteorder(order)


class _PickledArray:
    """numpy's _reconstruct(ndarray, (0,), b"b") + __setstate__(state), checked; the array is `.array`."""

    def __init__(self, subtype: object, shape: object, dtype: object) -> None:
        if not (subtype is _NdarrayType and shape == (0,) and dtype in (b"b", "b")):
            raise pickle.UnpicklingError("numpy _reconstruct is admitted only as (ndarray, (0,), 'b')")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        # numpy writes (version, shape, dtype, is_fortran, raw bytes); version 1, or absent in old pickles.
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError("numpy array state is not (shape, dtype, is_fortran, bytes)")
        shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape) and len(shape) <= 8):
            raise pickle.UnpicklingError(f"numpy array shape {shape!r} is not a tuple of sizes")
        if not (isinstance(dtype, _PickledDtype) and isinstance(fortran, bool) and isinstance(raw, bytes)):
            raise pickle.UnpicklingError("numpy array state is not (shape, dtype, is_fortran, bytes)")
        if len(raw) != math.prod(shape) * dtype.dtype.itemsize:
            raise pickle.UnpicklingError(f"numpy array of shape {shape} needs other than {len(raw)} bytes")
        flat = np.frombuffer(raw, dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()  # copy: writable, C order


def _resolved(value: object) -> object:
    """A checked array in place of its stand-in; anything else as it is."""
    if isinstance(value, _PickledArray):
        if value.array is None:
            raise pickle.UnpicklingError("numpy array without its data")
        return value.array
    return value


class _CifarUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals a CIFAR-10 batch needs, each in its harmless form."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _PickledArray,
        ("numpy._core.multiarray", "_reconstruct"): _PickledArray,
        ("numpy", "ndarray"): _NdarrayType,
        ("numpy", "dtype"): _PickledDtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "bytes"): _empty_bytes,
        ("__builtin__", "bytes"): _empty_bytes,
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
    """Unpickle a CIFAR-10 file with the restricted unpickler; arrays that are values of a top-level dict are
    numpy arrays, deeper ones stay stand-ins (no CIFAR-10 file has any)."""
    try:
        with open(path, "rb") as f:
            loaded = _CifarUnpickler(f, path).load()
        if isinstance(loaded, dict):
            loaded = {key: _resolved(value) for key, value in loaded.items()}
        return _resolved(loaded)
    except VaelabError:
        raise
    except Exception as e:  # a corrupt pickle can raise almost anything
        reason = " ".join(str(e).split())  # one line, whatever the message
        raise VaelabError(f"{path}: not a readable CIFAR-10 pickle ({type(e).__name__}: {reason})") from None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 3072) uint8 and labels (N,) int64 of one batch file."""
    batch = load_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise VaelabError(f"{path}: not a CIFAR-10 batch (needs a dict with keys b'data' and b'labels')")
    data = batch[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        shape = getattr(data, "shape", None)
        raise VaelabError(f"{path}: b'data' must be a (N, 3072) uint8 array, got {type(data).__name__} {shape}")
    if data.shape[0] == 0:
        raise VaelabError(f"{path}: the batch holds no images")
    labels = _labels(path, batch[b"labels"])
    if labels.shape != (data.shape[0],):
        raise VaelabError(f"{path}: {labels.size} labels for {data.shape[0]} images")
    return data, labels


def _labels(path: Path, labels: object) -> np.ndarray:
    """b'labels' as an (N,) int64 array in 0..9: a list of ints (the official form) or a 1-D int array."""
    n = len(CLASS_NAMES)
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        in_range = labels.size == 0 or (labels.min() >= 0 and labels.max() < n)
    elif isinstance(labels, list) and all(type(x) is int for x in labels):
        in_range = all(0 <= x < n for x in labels)
    else:
        raise VaelabError(f"{path}: b'labels' must be a list of integers, got {type(labels).__name__}")
    if not in_range:
        raise VaelabError(f"{path}: labels out of range 0..{n - 1}")
    return np.asarray(labels, dtype=np.int64)


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
    labels = np.concatenate([batch_labels for _, batch_labels in batches])
    if split == "test" and len(np.unique(labels)) == len(CLASS_NAMES) and (np.diff(labels) >= 0).all():
        # A copy stored sorted by class (a rebuild from per-class folders: 1,000 airplanes, then 1,000
        # automobiles, ...) would make "the first N test images" a few classes; one fixed permutation gives a
        # mixed order. The official test_batch is in a random order already and is left as it is.
        order = np.random.default_rng(TEST_ORDER_SEED).permutation(len(labels))
        data, labels = data[order], labels[order]
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
            files = {PurePosixPath(m.name).name for m in members if m.isfile()}
            for name in (*SPLIT_FILES["train"], *SPLIT_FILES["test"]):
                if name not in files:
                    raise VaelabError(f"{tar_path}: no {BATCH_DIR}/{name} inside; not the official CIFAR-10 archive")
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
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:  # gzip.BadGzipFile is an OSError
        reason = " ".join(str(e).split())
        raise VaelabError(f"{tar_path}: cannot extract into {directory}{os.sep} ({reason})") from None


def _check_member(tar_path: Path, member: tarfile.TarInfo) -> None:
    parts = PurePosixPath(member.name).parts
    inside = len(parts) in (1, 2) and parts[0] == BATCH_DIR and ".." not in parts
    if not inside or not (member.isfile() or member.isdir()):
        raise VaelabError(
            f"{tar_path}: unexpected entry {member.name!r} (only files under {BATCH_DIR}/ are allowed); "
            f"not the official CIFAR-10 archive"
        )
    if member.size > MAX_MEMBER_BYTES:
        raise VaelabError(
            f"{tar_path}: entry {member.name!r} claims {member.size} bytes (a batch has about 31 MB); "
            f"not the official CIFAR-10 archive"
        )

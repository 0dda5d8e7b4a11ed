"""Fuzzing every loader: random bytes and mutated good files either load correctly or raise VaelabError.

Any other exception (or a crash, or a file written outside the data folder)
fails the test. CI runs a fixed, derandomized set of examples per loader;
explore more locally with e.g.

    VAELAB_FUZZ_EXAMPLES=2000 python -m pytest tests/data/test_data_fuzz.py --hypothesis-seed=1

(setting VAELAB_FUZZ_EXAMPLES also turns derandomization off, so each seed explores anew).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import re
import struct
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from vaelab.data import load_images
from vaelab.data.cifar import BATCH_DIR, CLASS_NAMES, TAR_NAME
from vaelab.data.download import CHECKSUMS
from vaelab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, read_idx_pair
from vaelab.errors import VaelabError

from datafiles import idx_bytes, write_cifar_like

EXAMPLES = int(os.environ.get("VAELAB_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="VAELAB_FUZZ_EXAMPLES" not in os.environ,  # CI: the same examples on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
# Values that break parsers: zero, one, sign bits, all ones, a dimension off by one.
INTERESTING = (0, 1, 2, 3, 27, 28, 29, 255, 256, 3072, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF)


@st.composite
def mutated(draw, seed: bytes, fields: tuple[int, ...] = ()) -> bytes:
    """`seed` after 1-4 edits: a cut, flipped bits, inserted or deleted bytes, or a 4-byte
    big-endian field (at one of the offsets `fields`, or anywhere) set to an interesting value."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cut", "flip", "insert", "delete", "field"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "cut":
            del data[pos:]
        elif kind == "flip" and pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif kind == "field":
            if fields and draw(st.booleans()):
                pos = draw(st.sampled_from(fields))
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, 0xFFFF_FFFF))
            data[pos : pos + 4] = struct.pack(">I", value)
    return bytes(data)


def inputs(seed: bytes, fields: tuple[int, ...] = ()) -> st.SearchStrategy[bytes]:
    """Mostly mutations of a good file, sometimes pure noise."""
    return st.one_of(mutated(seed, fields), st.binary(max_size=4 * len(seed)))


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def _refused_or(load):
    """load() if it succeeds, else None when it raised VaelabError; any other exception propagates."""
    try:
        result = load()
    except VaelabError as e:
        assert "\n" not in str(e), "an error is one line"
        event(f"refused: {re.sub(r'/[^ ]*', '...', str(e))[:60]}")  # for --hypothesis-show-statistics
        return None
    event("loaded")
    return result


# --- IDX (MNIST, Fashion-MNIST) --------------------------------------------------------------------

IMAGES = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
LABELS = np.array([7, 0, 9], dtype=np.uint8)
IDX_FIELDS = (0, 4, 8, 12)  # magic and up to three dimensions


def _check_pair(images_gz: bytes, labels_gz: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        images_path, labels_path = Path(tmp, "images.gz"), Path(tmp, "labels.gz")
        images_path.write_bytes(images_gz)
        labels_path.write_bytes(labels_gz)
        got = _refused_or(lambda: read_idx_pair(images_path, labels_path, num_classes=10, image_size=(28, 28)))
    if got is not None:
        images, labels = got
        assert images.dtype == torch.uint8 and images.shape[1:] == (1, 28, 28) and len(images) > 0
        assert labels.dtype == torch.int64 and labels.shape == (len(images),)
        assert 0 <= labels.min() and labels.max() < 10


@FUZZ
@given(raw=inputs(idx_bytes(IMAGES), IDX_FIELDS))
def test_idx_images(raw):
    _check_pair(gz(raw), gz(idx_bytes(LABELS)))


@FUZZ
@given(raw=inputs(idx_bytes(LABELS), IDX_FIELDS[:2]))
def test_idx_labels(raw):
    _check_pair(gz(idx_bytes(IMAGES)), gz(raw))


@FUZZ
@given(compressed=inputs(gz(idx_bytes(IMAGES)), (4, 8)))  # 4: the gzip mtime field
def test_gzip_stream(compressed):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "images.gz")
        path.write_bytes(compressed)
        got = _refused_or(lambda: read_idx(path, IMAGES_MAGIC))
        if got is not None:
            assert got.dtype == np.uint8 and got.ndim == 3 and got.size > 0
        assert _refused_or(lambda: read_idx(path, LABELS_MAGIC)) is None or got is None


# --- CIFAR-10 -----------------------------------------------------------------------------------


def _cifar_root(tmp: str) -> Path:
    batch_dir = Path(tmp, "cifar10", BATCH_DIR)
    write_cifar_like(batch_dir, per_batch=2, label_names=[n.encode() for n in CLASS_NAMES])
    return batch_dir


def _check_cifar(root: Path) -> None:
    got = _refused_or(lambda: load_images("cifar10", "test", data_dir=root, download=False))
    if got is not None:
        assert got.images.shape[1:] == (3, 32, 32) and len(got) > 0
        assert 0 <= got.labels.min() and got.labels.max() < 10 and len(got.class_names) == 10


_PIXELS = np.random.default_rng(2).integers(0, 256, (2, 3072), dtype=np.uint8)
_GOOD_BATCH = {b"batch_label": b"testing", b"labels": [3, 1], b"data": _PIXELS}
_GOOD_META = {b"num_cases_per_batch": 2, b"label_names": [n.encode() for n in CLASS_NAMES], b"num_vis": 3072}


@FUZZ
@given(raw=inputs(pickle.dumps(_GOOD_BATCH, protocol=2)))
def test_cifar_batch_pickle(raw):
    with tempfile.TemporaryDirectory() as tmp:
        (_cifar_root(tmp) / "test_batch").write_bytes(raw)
        _check_cifar(Path(tmp))


@FUZZ
@given(raw=inputs(pickle.dumps(_GOOD_META, protocol=2)))
def test_cifar_meta_pickle(raw):
    with tempfile.TemporaryDirectory() as tmp:
        (_cifar_root(tmp) / "batches.meta").write_bytes(raw)
        _check_cifar(Path(tmp))


def _good_tar() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        batch_dir = Path(tmp, "src")
        write_cifar_like(batch_dir, per_batch=1, label_names=[n.encode() for n in CLASS_NAMES])
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for path in sorted(batch_dir.iterdir()):
                tar.add(path, arcname=f"{BATCH_DIR}/{path.name}")
        return out.getvalue()


def _fix_tar_checksums(data: bytes) -> bytes:
    """Recompute each header's checksum so mutated names, types and sizes reach our member checks."""
    out, pos = bytearray(data), 0
    while pos + 512 <= len(out) and any(out[pos : pos + 512]):
        header = out[pos : pos + 512]
        header[148:156] = b" " * 8
        out[pos + 148 : pos + 156] = b"%06o\0 " % sum(header)
        try:
            size = int(bytes(header[124:136]).strip(b"\0 ") or b"0", 8)
        except ValueError:
            break
        pos += 512 + -(-size // 512) * 512
    return bytes(out)


TAR = _good_tar()
TAR_FIELDS = (0, 100, 124, 128, 156, 512 * 8 + 124)  # name, mode, size, size digits, type, a later size


@FUZZ
@given(
    raw=inputs(TAR, TAR_FIELDS),
    fix_checksums=st.booleans(),
    outer=st.none() | st.none() | mutated(gz(TAR), (4,)),  # mostly a mutated tar, sometimes a mutated gzip
)
def test_cifar_tar(monkeypatch, raw, fix_checksums, outer):
    monkeypatch.setitem(CHECKSUMS, "cifar10", {})
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp, "root", "cifar10")
        directory.mkdir(parents=True)
        tar_gz = outer if outer is not None else gz(_fix_tar_checksums(raw) if fix_checksums else raw)
        (directory / TAR_NAME).write_bytes(tar_gz)
        _check_cifar(directory.parent)
        # Nothing escaped, nothing half-extracted was left behind.
        assert sorted(os.listdir(tmp)) == ["root"] and os.listdir(directory.parent) == ["cifar10"]
        assert set(os.listdir(directory)) <= {TAR_NAME, BATCH_DIR}
        if (directory / BATCH_DIR).exists():
            names = set(os.listdir(directory / BATCH_DIR))
            assert all((directory / BATCH_DIR / n).is_file() for n in names)


# --- Image folders ----------------------------------------------------------------------------


def _image_bytes(fmt: str) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def _fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC so mutations reach the decoder instead of stopping at the CRC check."""
    out, pos = bytearray(data[:8]), 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 8 + length
        if end + 4 > len(data):
            break
        body = data[pos + 4 : end]
        out += data[pos:end] + struct.pack(">I", zlib.crc32(body))
        pos = end + 4
    return bytes(out + data[pos:])


PNG, JPEG = _image_bytes("PNG"), _image_bytes("JPEG")
PNG_FIELDS = (16, 20, 33)  # IHDR width, height; the first chunk after IHDR


def _check_folder(raw: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, name).write_bytes(raw)
        for skip in (False, True):
            got = _refused_or(lambda s=skip: load_images(f"folder:{tmp}", "train", image_size=8, skip_bad_files=s))
            if got is not None:
                assert got.images.shape == (1, 3, 8, 8) and got.images.dtype == torch.uint8


@pytest.fixture
def small_bomb_limit(monkeypatch):
    """Pillow's decompression-bomb limit lowered, so the fuzzer reaches it without allocating much."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)


@FUZZ
@given(raw=inputs(PNG, PNG_FIELDS), fix_crcs=st.booleans())
def test_folder_png(small_bomb_limit, raw, fix_crcs):
    _check_folder(_fix_png_crcs(raw) if fix_crcs else raw, "image.png")


@FUZZ
@given(raw=inputs(JPEG, (2, 4, 20)))
def test_folder_jpeg(small_bomb_limit, raw):
    _check_folder(raw, "photo.jpg")

"""IDX parsing (MNIST / Fashion-MNIST files) on tiny files written by the test."""

import gzip
import struct
import warnings

import numpy as np
import pytest
import torch

from vaelab.data import load_images
from vaelab.data.download import CHECKSUMS
from vaelab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, read_idx_pair
from vaelab.errors import VaelabError

from datafiles import idx_bytes, write_idx, write_mnist_like


def test_round_trip(tmp_path):
    images = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    labels = np.array([7, 1], dtype=np.uint8)
    got_images, got_labels = read_idx_pair(
        write_idx(tmp_path / "i.gz", images), write_idx(tmp_path / "l.gz", labels), num_classes=10
    )
    assert got_images.dtype == torch.uint8 and got_images.shape == (2, 1, 3, 5)
    assert torch.equal(got_images[:, 0], torch.from_numpy(images))
    assert got_labels.dtype == torch.int64 and got_labels.tolist() == [7, 1]


def test_wrong_magic_names_file(tmp_path):
    path = write_idx(tmp_path / "bad-magic.gz", np.zeros((2, 3, 3), np.uint8), magic=2049 + 2)
    with pytest.raises(VaelabError, match="bad-magic.gz.*magic number 2051, expected 2049"):
        read_idx(path, LABELS_MAGIC)


def test_labels_file_read_as_images_is_refused(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.zeros(5, np.uint8))
    with pytest.raises(VaelabError, match="labels.gz.*magic"):
        read_idx(path, IMAGES_MAGIC)


@pytest.mark.parametrize("cut", [1, 100, 150])  # missing pixels, pixels gone, header cut
def test_truncated_file_names_file(tmp_path, cut):
    raw = idx_bytes(np.zeros((4, 6, 6), np.uint8))
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(raw[: len(raw) - cut]))
    with pytest.raises(VaelabError, match="short.gz.*(truncated|size mismatch)"):
        read_idx(path, IMAGES_MAGIC)


def test_extra_bytes_are_refused(tmp_path):
    path = tmp_path / "long.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 2, 2), np.uint8)) + b"\0"))
    with pytest.raises(VaelabError, match="long.gz.*size mismatch"):
        read_idx(path, IMAGES_MAGIC)


def test_truncated_gzip_stream_names_file(tmp_path):
    path = tmp_path / "cut-stream.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((8, 8, 8), np.uint8)))[:-12])
    with pytest.raises(VaelabError, match="cut-stream.gz"):
        read_idx(path, IMAGES_MAGIC)


def test_not_gzip_names_file(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(idx_bytes(np.zeros((2, 2, 2), np.uint8)))
    with pytest.raises(VaelabError, match="plain.gz.*gzip"):
        read_idx(path, IMAGES_MAGIC)


def test_label_count_mismatch_names_labels_file(tmp_path):
    images = write_idx(tmp_path / "img.gz", np.zeros((3, 2, 2), np.uint8))
    labels = write_idx(tmp_path / "lab.gz", np.zeros(4, np.uint8))
    with pytest.raises(VaelabError, match="lab.gz: 4 labels for 3 images"):
        read_idx_pair(images, labels, num_classes=10)


def test_label_out_of_range(tmp_path):
    images = write_idx(tmp_path / "img.gz", np.zeros((1, 2, 2), np.uint8))
    labels = write_idx(tmp_path / "lab.gz", np.array([10], np.uint8))
    with pytest.raises(VaelabError, match="lab.gz: label 10 out of range"):
        read_idx_pair(images, labels, num_classes=10)


def test_load_images_reads_local_files_without_checksums(tmp_path, monkeypatch):
    arrays = write_mnist_like(tmp_path / "fashion-mnist")
    monkeypatch.setitem(CHECKSUMS, "fashion-mnist", {})
    test = load_images("fashion-mnist", "test", data_dir=tmp_path, download=False)
    assert test.images.shape == (4, 1, 28, 28)
    assert torch.equal(test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"]))
    assert test.class_names[0] == "T-shirt/top" and test.class_names[9] == "Ankle boot"


def _gz_header(tmp_path, name, *fields, body=b""):
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"".join(struct.pack(">I", f) for f in fields) + body))
    return path


@pytest.mark.parametrize(
    "dims",
    [
        (0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF),  # ~7.9e28 bytes claimed
        (0xFFFF_FFFF, 28, 28),  # a "negative" count read as unsigned: 3.4 TB
        (2**31, 2**31, 4),  # 2**64 bytes: wraps to 0 in int64 arithmetic
    ],
)
def test_huge_header_dims_allocate_nothing(tmp_path, dims):
    path = _gz_header(tmp_path, "huge.gz", IMAGES_MAGIC, *dims, body=bytes(784))
    with pytest.raises(VaelabError, match=r"huge.gz: IDX size mismatch: dimensions .* the file holds 800 "):
        read_idx(path, IMAGES_MAGIC)


@pytest.mark.parametrize("dims", [(0, 28, 28), (3, 0, 28), (3, 28, 0)])
def test_empty_dims_are_refused(tmp_path, dims):
    with pytest.raises(VaelabError, match=r"empty.gz: IDX file holds no data"):
        read_idx(_gz_header(tmp_path, "empty.gz", IMAGES_MAGIC, *dims), IMAGES_MAGIC)


def test_gzip_bomb_is_read_only_as_far_as_the_header_says(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((1, 2, 2), np.uint8)) + bytes(16 << 20), compresslevel=1))
    with pytest.raises(VaelabError, match=r"bomb.gz: IDX size mismatch: .* need 20 bytes, the file holds 21 or more"):
        read_idx(path, IMAGES_MAGIC)


@pytest.mark.parametrize("damage", ["crc", "deflate", "header"])
def test_damaged_gzip_names_file(tmp_path, damage):
    good = bytearray(gzip.compress(idx_bytes(np.arange(64, dtype=np.uint8).reshape(1, 8, 8)), mtime=0))
    if damage == "crc":
        good[-8] ^= 1
    elif damage == "deflate":
        good[12:20] = b"\xff" * 8
    else:
        good[0] = 0
    path = tmp_path / "damaged.gz"
    path.write_bytes(bytes(good))
    with pytest.raises(VaelabError, match="damaged.gz: (not a readable gzip file|not an IDX file)"):
        read_idx(path, IMAGES_MAGIC)


def test_images_of_the_wrong_size_are_refused(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((4, 14, 14), np.uint8))
    monkeypatch.setitem(CHECKSUMS, "mnist", {})
    with pytest.raises(VaelabError, match=r"t10k-images-idx3-ubyte.gz: images are 14x14, this dataset's are 28x28"):
        load_images("mnist", "test", data_dir=tmp_path, download=False)


def test_loaded_arrays_are_writable(tmp_path):
    images_path = write_idx(tmp_path / "i.gz", np.ones((2, 3, 3), np.uint8))
    labels_path = write_idx(tmp_path / "l.gz", np.ones(2, np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a read-only numpy array
        images, _ = read_idx_pair(images_path, labels_path, 10)
    images += 1
    assert images.sum().item() == 2 * 9 * 2

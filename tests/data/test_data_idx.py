"""IDX parsing (MNIST / Fashion-MNIST files) on tiny files written by the test."""

import gzip

import numpy as np
import pytest
import torch
from datafiles import idx_bytes, write_idx, write_mnist_like

from vaelab.data import load_images
from vaelab.data.download import CHECKSUMS
from vaelab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, read_idx_pair
from vaelab.errors import VaelabError


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
    assert test.images.shape == (4, 1, 4, 4)
    assert torch.equal(test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"]))
    assert test.class_names[0] == "T-shirt/top" and test.class_names[9] == "Ankle boot"

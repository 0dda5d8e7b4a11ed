"""CIFAR-10 python layout, the official tar.gz, and the restricted unpickler."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from datafiles import md5_of, write_cifar_like

from vaelab.data import load_images
from vaelab.data.cifar import BATCH_DIR, CLASS_NAMES, TAR_NAME, load_pickle
from vaelab.data.download import CHECKSUMS, MIRRORS
from vaelab.errors import VaelabError


def test_batches_load_with_the_right_layout(tmp_path):
    written = write_cifar_like(tmp_path / "cifar10" / BATCH_DIR, label_names=[b"a%d" % i for i in range(10)])
    train = load_images("cifar10", "train", data_dir=tmp_path, download=False)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.images.is_contiguous()
    assert train.class_names == tuple(f"a{i}" for i in range(10))
    data_1, labels_1 = written["data_batch_1"]
    # A row holds 1024 red, then 1024 green, then 1024 blue values, each plane row-major.
    row = data_1[1]
    assert train.images[1, 1, 2, 3].item() == row[1024 + 2 * 32 + 3]
    assert train.labels.tolist()[:3] == labels_1
    test = load_images("cifar10", "test", data_dir=tmp_path, download=False)
    assert torch.equal(test.images.reshape(3, -1), torch.from_numpy(written["test_batch"][0]))


def test_missing_meta_falls_back_to_standard_names(tmp_path):
    write_cifar_like(tmp_path / "cifar10" / BATCH_DIR)
    assert load_images("cifar10", "test", data_dir=tmp_path).class_names == CLASS_NAMES


def test_missing_batches_without_tar(tmp_path):
    with pytest.raises(VaelabError, match="missing cifar-10-batches-py/test_batch.*cifar-10-python.tar.gz"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)


def _make_tar(source_dir, tar_path, extra=()):
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(source_dir, arcname=BATCH_DIR)
        for name, payload in extra:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def test_official_tar_layout_is_extracted(tmp_path, monkeypatch):
    written = write_cifar_like(tmp_path / "src", label_names=[n.encode() for n in CLASS_NAMES])
    directory = tmp_path / "root" / "cifar10"
    directory.mkdir(parents=True)
    _make_tar(tmp_path / "src", directory / TAR_NAME)
    monkeypatch.setitem(CHECKSUMS, "cifar10", {TAR_NAME: md5_of(directory / TAR_NAME)})
    train = load_images("cifar10", "train", data_dir=tmp_path / "root", download=False)
    assert train.images.shape == (15, 3, 32, 32)
    assert torch.equal(train.images[:3].reshape(3, -1), torch.from_numpy(written["data_batch_1"][0]))
    assert sorted(os.listdir(directory)) == [BATCH_DIR, TAR_NAME]  # no temporary folder left
    assert (directory / BATCH_DIR / "test_batch").is_file()


def test_tar_is_downloaded_and_extracted(tmp_path, http_root, monkeypatch):
    folder, base = http_root
    write_cifar_like(tmp_path / "src")
    _make_tar(tmp_path / "src", folder / TAR_NAME)
    monkeypatch.setitem(CHECKSUMS, "cifar10", {TAR_NAME: md5_of(folder / TAR_NAME)})
    monkeypatch.setitem(MIRRORS, "cifar10", (base,))
    test = load_images("cifar10", "test", data_dir=tmp_path / "root")
    assert test.images.shape == (3, 3, 32, 32)


def test_tar_with_wrong_md5_is_refused(tmp_path, monkeypatch):
    write_cifar_like(tmp_path / "src")
    directory = tmp_path / "cifar10"
    directory.mkdir()
    _make_tar(tmp_path / "src", directory / TAR_NAME)
    monkeypatch.setitem(CHECKSUMS, "cifar10", {TAR_NAME: "f" * 32})
    with pytest.raises(VaelabError, match="bad checksum"):
        load_images("cifar10", "train", data_dir=tmp_path, download=False)
    assert not (directory / BATCH_DIR).exists()


@pytest.mark.parametrize("evil", ["../escape", f"{BATCH_DIR}/../../escape", "/tmp/escape", "other/file"])
def test_tar_members_outside_the_batch_folder_are_refused(tmp_path, monkeypatch, evil):
    write_cifar_like(tmp_path / "src")
    directory = tmp_path / "root" / "cifar10"
    directory.mkdir(parents=True)
    _make_tar(tmp_path / "src", directory / TAR_NAME, extra=[(evil, b"gotcha")])
    monkeypatch.setitem(CHECKSUMS, "cifar10", {TAR_NAME: md5_of(directory / TAR_NAME)})
    with pytest.raises(VaelabError, match="unexpected entry"):
        load_images("cifar10", "train", data_dir=tmp_path / "root", download=False)
    assert not (directory / BATCH_DIR).exists()
    assert not (tmp_path / "root" / "escape").exists() and not (tmp_path / "escape").exists()


def test_tar_symlink_is_refused(tmp_path, monkeypatch):
    directory = tmp_path / "cifar10"
    directory.mkdir()
    with tarfile.open(directory / TAR_NAME, "w:gz") as tar:
        link = tarfile.TarInfo(f"{BATCH_DIR}/test_batch")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    monkeypatch.setitem(CHECKSUMS, "cifar10", {TAR_NAME: md5_of(directory / TAR_NAME)})
    with pytest.raises(VaelabError, match="unexpected entry"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)


class _WritesAFile:
    """Unpickling this runs exec(), which would create `target`."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("victim", ["test_batch", "batches.meta"])
def test_malicious_pickle_is_refused(tmp_path, victim):
    batch_dir = tmp_path / "cifar10" / BATCH_DIR
    write_cifar_like(batch_dir, label_names=[n.encode() for n in CLASS_NAMES])
    target = tmp_path / "pwned.txt"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _WritesAFile(target)}
    (batch_dir / victim).write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(VaelabError, match=f"{victim}: refused to unpickle (__builtin__|builtins).exec"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)
    assert not target.exists()
    # Control: plain pickle would have run it.
    control = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(_WritesAFile(control), protocol=2))
    assert control.read_text() == "pwned"


def test_codecs_encode_only_as_latin1(tmp_path):
    path = tmp_path / "rot13"
    # _codecs.encode("abc", "rot13") built by hand: GLOBAL, two strings, TUPLE2, REDUCE.
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(VaelabError, match="not a readable CIFAR-10 pickle"):
        load_pickle(path)


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": np.zeros((2, 3072), np.uint8)}, "needs a dict"),
        ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, r"\(N, 3072\) uint8"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, r"\(N, 3072\) uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "out of range"),
        ([1, 2, 3], "needs a dict"),
    ],
)
def test_malformed_batches_name_the_file(tmp_path, batch, message):
    batch_dir = tmp_path / "cifar10" / BATCH_DIR
    write_cifar_like(batch_dir)
    (batch_dir / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(VaelabError, match=f"test_batch: .*{message}"):
        load_images("cifar10", "test", data_dir=tmp_path)


def test_garbage_file_names_the_file(tmp_path):
    batch_dir = tmp_path / "cifar10" / BATCH_DIR
    write_cifar_like(batch_dir)
    (batch_dir / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(VaelabError, match="test_batch: not a readable CIFAR-10 pickle"):
        load_images("cifar10", "test", data_dir=tmp_path)

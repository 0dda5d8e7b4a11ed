"""CIFAR-10 python layout, the official tar.gz, and the restricted unpickler."""

import gzip
import io
import os
import pickle
import subprocess
import tarfile

import numpy as np
import pytest
import torch

from vaelab.data import cifar, load_images
from vaelab.data.cifar import BATCH_DIR, CLASS_NAMES, TAR_NAME, load_pickle
from vaelab.data.download import CHECKSUMS, MIRRORS
from vaelab.errors import VaelabError

from datafiles import md5_of, write_cifar_like


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


class _Calls:
    """Unpickling this calls fn(*args): the shape of every code-running pickle."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _touch(target):
    """Payloads that would create `target`, by os.system, eval, subprocess, or by hand-written opcodes."""
    zeros = np.zeros((1, 3072), np.uint8)
    writes = f"open({str(target)!r}, 'w').write('pwned')"
    return {
        "os.system": pickle.dumps(_Calls(os.system, f"touch {target}"), protocol=2),
        "builtins.eval": pickle.dumps(_Calls(eval, writes), protocol=2),
        "subprocess": pickle.dumps(_Calls(subprocess.check_call, ["touch", str(target)]), protocol=2),
        "STACK_GLOBAL (protocol 4)": pickle.dumps(_Calls(os.system, f"touch {target}"), protocol=4),
        "INST (protocol 0)": b"(S'touch " + str(target).encode() + b"'\nios\nsystem\n.",
        "nested in data": pickle.dumps({b"data": [(zeros, [_Calls(exec, writes)])], b"labels": [0]}, protocol=2),
        "nested in labels": pickle.dumps({b"data": zeros, b"labels": [0, _Calls(exec, writes)]}, protocol=2),
        "as a dict key": pickle.dumps({b"data": zeros, b"labels": [0], _Calls(exec, writes): 1}, protocol=2),
    }


@pytest.mark.parametrize("kind", list(_touch("x")))
def test_code_running_pickles_are_refused_before_running(tmp_path, kind):
    batch_dir = tmp_path / "cifar10" / BATCH_DIR
    write_cifar_like(batch_dir)
    target = tmp_path / "pwned.txt"
    (batch_dir / "test_batch").write_bytes(_touch(target)[kind])
    # Protocol 2 writes builtins as __builtin__ and subprocess as commands (Python 2 names).
    runs_code = r"(os|posix|nt|builtins|__builtin__|commands)\."
    with pytest.raises(VaelabError, match=f"test_batch: refused to unpickle {runs_code}"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)
    assert not target.exists()


@pytest.mark.parametrize(
    "module, name",
    [
        ("numpy", "load"),  # would read any .npy/.npz/pickle file, allow_pickle included
        ("numpy.ctypeslib", "load_library"),  # would load a shared library: native code
        ("numpy", "frombuffer"),
        ("numpy.testing._private.utils", "runstring"),  # exec in disguise
        ("torch", "load"),
        ("pickle", "loads"),  # a second, unrestricted unpickler
    ],
)
def test_other_numpy_and_torch_globals_are_refused(tmp_path, module, name):
    path = tmp_path / "batch"
    path.write_bytes(f"c{module}\n{name}\n(S'/etc/passwd'\ntR.".encode())
    with pytest.raises(VaelabError, match=rf"batch: refused to unpickle {module}\.{name}"):
        load_pickle(path)


@pytest.mark.parametrize(
    "payload, message",
    [
        # numpy 2.4's dtype.__setstate__ segfaults on this 6-tuple (numpy#30476): it must never reach numpy.
        (
            b"cnumpy\ndtype\n(X\x02\x00\x00\x00u1\x89\x88tR"
            b"(K\x03X\x01\x00\x00\x00|NJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.",
            "dtype state is not that of a plain number type",
        ),
        (b"cnumpy\ndtype\n(X\x01\x00\x00\x00O\x89\x88tR.", "not a plain number type"),  # object arrays
        # np.ndarray((1_410_065_408,)): 1.4 GB uninitialised, never filled from the file
        (b"cnumpy\nndarray\n(J\x00\xe4\x0b\x54\x85tR.", "takes no arguments"),
        (
            b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\nJ\x00\xe4\x0b\x54\x85C\x01btR.",
            r"admitted only as \(ndarray, \(0,\), 'b'\)",
        ),
        (b"c__builtin__\nbytes\n(J\x00\xe4\x0b\x54tR.", "bytes.. is admitted only without arguments"),  # bytes(n)
        (b"c_codecs\nencode\n(X\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13tR.", "admitted only as"),
    ],
)
def test_admitted_globals_only_in_their_harmless_form(tmp_path, payload, message):
    path = tmp_path / "batch"
    path.write_bytes(b"\x80\x02" + payload)
    with pytest.raises(VaelabError, match=f"batch: not a readable CIFAR-10 pickle .*{message}"):
        load_pickle(path)


def test_array_bytes_must_match_the_shape(tmp_path):
    raw = pickle.dumps(np.zeros((2, 3072), np.uint8), protocol=2)
    path = tmp_path / "batch"
    path.write_bytes(raw.replace(b"M\x00\x0c", b"M\x01\x0c"))  # shape (2, 3073): one row's worth too few bytes
    with pytest.raises(VaelabError, match=r"array of shape \(2, 3073\) needs other than 6144 bytes"):
        load_pickle(path)


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": [[0] * 3072], b"labels": [0]}, r"b'data' must be a \(N, 3072\) uint8 array, got list"),
        ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "holds no images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 2**70]}, "out of range"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, "out of range"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.0, 1.0]}, "must be a list of integers, got list"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["0", "1"]}, "must be a list of integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [True, False]}, "must be a list of integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": None}, "must be a list of integers, got NoneType"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": np.zeros((1, 2), np.int64)}, "got ndarray"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, "needs a dict with keys b'data'"),  # str keys
        (None, "needs a dict"),
    ],
)
def test_more_malformed_batches(tmp_path, batch, message):
    batch_dir = tmp_path / "cifar10" / BATCH_DIR
    write_cifar_like(batch_dir)
    (batch_dir / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(VaelabError, match=f"test_batch: .*{message}"):
        load_images("cifar10", "test", data_dir=tmp_path)


def test_integer_array_labels_and_fortran_data_load(tmp_path):
    batch_dir = tmp_path / "cifar10" / BATCH_DIR
    write_cifar_like(batch_dir)
    data = np.asfortranarray(np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8))
    (batch_dir / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": np.array([4, 9])}, protocol=2))
    test = load_images("cifar10", "test", data_dir=tmp_path)
    assert test.labels.tolist() == [4, 9] and torch.equal(test.images.reshape(2, -1), torch.from_numpy(data))


@pytest.mark.parametrize("cut", [0, 1, 30, -100])
def test_truncated_pickles_name_the_file(tmp_path, cut):
    batch_dir = tmp_path / "cifar10" / BATCH_DIR
    written = write_cifar_like(batch_dir)
    raw = (batch_dir / "test_batch").read_bytes()
    (batch_dir / "test_batch").write_bytes(raw[:cut])
    assert written  # the other files stay good
    with pytest.raises(VaelabError, match="test_batch: not a readable CIFAR-10 pickle"):
        load_images("cifar10", "test", data_dir=tmp_path)


def test_meta_that_is_not_a_dict_names_the_file(tmp_path):
    batch_dir = tmp_path / "cifar10" / BATCH_DIR
    write_cifar_like(batch_dir)
    (batch_dir / "batches.meta").write_bytes(pickle.dumps([b"airplane"] * 10, protocol=2))
    with pytest.raises(VaelabError, match="batches.meta: b'label_names' must list 10 byte strings"):
        load_images("cifar10", "test", data_dir=tmp_path)


def _tar_dir(tmp_path, monkeypatch, payload):
    directory = tmp_path / "cifar10"
    directory.mkdir(exist_ok=True)
    (directory / TAR_NAME).write_bytes(payload)
    monkeypatch.setitem(CHECKSUMS, "cifar10", {TAR_NAME: md5_of(directory / TAR_NAME)})
    return directory


@pytest.mark.parametrize("kind", ["text", "gzip of text", "plain tar", "truncated", "empty"])
def test_broken_tars_name_the_file(tmp_path, monkeypatch, kind):
    write_cifar_like(tmp_path / "src")
    _make_tar(tmp_path / "src", tmp_path / "good.tar.gz")
    good = (tmp_path / "good.tar.gz").read_bytes()
    payload = {
        "text": b"not a tar at all",
        "gzip of text": gzip.compress(b"x" * 2000),
        "plain tar": gzip.decompress(good),
        "truncated": good[: len(good) // 2],
        "empty": b"",
    }[kind]
    directory = _tar_dir(tmp_path, monkeypatch, payload)
    with pytest.raises(VaelabError, match=f"{TAR_NAME}: cannot extract into"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)
    assert sorted(os.listdir(directory)) == [TAR_NAME]  # no temporary folder, nothing half-extracted


def test_tar_without_a_batch_is_refused(tmp_path, monkeypatch):
    write_cifar_like(tmp_path / "src")
    (tmp_path / "src" / "data_batch_3").unlink()
    directory = tmp_path / "cifar10"
    directory.mkdir()
    _make_tar(tmp_path / "src", directory / TAR_NAME)
    monkeypatch.setitem(CHECKSUMS, "cifar10", {TAR_NAME: md5_of(directory / TAR_NAME)})
    with pytest.raises(VaelabError, match=f"no {BATCH_DIR}/data_batch_3 inside"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)
    assert not (directory / BATCH_DIR).exists()


def test_tar_member_too_large_is_refused(tmp_path, monkeypatch):
    write_cifar_like(tmp_path / "src")
    directory = tmp_path / "cifar10"
    directory.mkdir()
    _make_tar(tmp_path / "src", directory / TAR_NAME)
    monkeypatch.setitem(CHECKSUMS, "cifar10", {TAR_NAME: md5_of(directory / TAR_NAME)})
    monkeypatch.setattr(cifar, "MAX_MEMBER_BYTES", 1000)  # the tiny batches are ~3 kB
    with pytest.raises(VaelabError, match=r"entry 'cifar-10-batches-py/\w+' claims \d+ bytes"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)
    assert not (directory / BATCH_DIR).exists()


def test_a_test_split_sorted_by_class_loads_in_a_fixed_mixed_order(tmp_path):
    batch_dir = tmp_path / "cifar10" / BATCH_DIR
    write_cifar_like(batch_dir)
    data = np.arange(40 * 3072, dtype=np.int64).reshape(40, 3072).astype(np.uint8)
    data[:, 0] = np.arange(40)  # each image's first pixel names it
    labels = [k // 4 for k in range(40)]  # 4 of each class, class by class
    batch = {b"batch_label": b"test", b"labels": labels, b"data": data, b"filenames": [b"x.png"] * 40}
    (batch_dir / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    test = load_images("cifar10", "test", data_dir=tmp_path, download=False)
    order = test.images[:, 0, 0, 0].long()
    assert sorted(order.tolist()) == list(range(40)) and order.tolist() != list(range(40))
    assert test.labels.tolist() == [labels[i] for i in order.tolist()]  # images keep their labels
    assert len(set(test.labels[:10].tolist())) >= 5  # the first ten hold many classes, not two
    again = load_images("cifar10", "test", data_dir=tmp_path / ".." / tmp_path.name, download=False)
    assert torch.equal(again.images, test.images)  # the same order every time
    train = load_images("cifar10", "train", data_dir=tmp_path, download=False)
    assert torch.equal(
        train.images.reshape(15, -1)[:3], torch.from_numpy(write_cifar_like(tmp_path / "x")["data_batch_1"][0])
    )

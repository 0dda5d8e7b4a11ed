"""Names, splits and options checked by load_images; dataset_status; resolve_data_root; ImageSet."""

import os
import types
from pathlib import Path

import pytest
import torch

from vaelab.data import ImageSet, dataset_names, dataset_status, load_images, resolve_data_root
from vaelab.data import root as root_module
from vaelab.data.download import CHECKSUMS
from vaelab.errors import VaelabError

from datafiles import write_cifar_like, write_mnist_like


def test_dataset_names():
    assert dataset_names() == [
        "mnist",
        "fashion-mnist",
        "cifar10",
        "shapes",
        "shapes:colour",
        "shapes:noise",
        "folder:PATH",
    ]


@pytest.mark.parametrize(
    "name, split, options, message",
    [
        ("imagenet", "train", {}, r"unknown dataset 'imagenet' \(known: .*mnist"),
        ("mnist:x", "train", {}, "unknown dataset 'mnist:x'"),
        ("folder", "train", {}, "needs a path: folder:PATH"),
        ("mnist", "valid", {}, r"unknown split 'valid' \(known: train, test\)"),
        ("mnist", "train", {"image_size": 64}, "fixed at 28x28.*only applies to folder:PATH and shapes"),
        ("cifar10", "train", {"image_size": 28}, "fixed at 32x32"),
        ("cifar10", "train", {"grayscale": True}, "grayscale only applies to folder"),
        ("shapes", "train", {"image_size": 0}, "positive integer"),
        ("shapes", "train", {"image_size": 32.0}, "positive integer"),
    ],
)
def test_bad_requests_fail_before_touching_files(tmp_path, name, split, options, message):
    with pytest.raises(VaelabError, match=message):
        load_images(name, split, data_dir=tmp_path / "never-created", download=False, **options)
    assert not (tmp_path / "never-created").exists()


def test_native_size_and_grayscale_accepted_for_grey_sets(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "mnist")
    monkeypatch.setitem(CHECKSUMS, "mnist", {})
    assert len(load_images("mnist", "train", data_dir=tmp_path, image_size=28, grayscale=True)) == 6


def test_status_on_an_empty_root(tmp_path):
    rows = {row.name: row for row in dataset_status(tmp_path)}
    assert list(rows) == dataset_names()
    mnist = rows["mnist"]
    assert not mnist.present and mnist.path == tmp_path / "mnist" and len(mnist.missing) == 4
    assert mnist.image_shape == (1, 28, 28) and (mnist.num_train, mnist.num_test) == (60_000, 10_000)
    assert rows["cifar10"].missing[0] == "cifar-10-batches-py/data_batch_1"
    assert rows["shapes"].present and rows["shapes"].path is None and rows["shapes"].num_train == 20_000
    assert all("\n" not in row.description for row in rows.values())


def test_status_sees_files_and_the_cifar_tar(tmp_path):
    write_mnist_like(tmp_path / "mnist")
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").write_bytes(b"")
    write_cifar_like(tmp_path / "fashion-mnist")  # wrong files: still missing
    rows = {row.name: row for row in dataset_status(tmp_path)}
    assert rows["mnist"].present and rows["mnist"].missing == ()
    assert rows["cifar10"].present
    assert not rows["fashion-mnist"].present


def test_resolve_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == tmp_path / "xdg" / "vaelab" / "data"
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv("VAELAB_DATA_DIR", "")
    assert resolve_data_root() == tmp_path / "xdg" / "vaelab" / "data"


def test_resolve_data_root_relative_and_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAELAB_DATA_DIR", "../shared/data")
    assert resolve_data_root() == (tmp_path.parent / "shared" / "data").resolve()
    monkeypatch.delenv("VAELAB_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert resolve_data_root() == (tmp_path / "home" / ".cache" / "vaelab" / "data").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_root() == (tmp_path / "home" / ".cache" / "vaelab" / "data").resolve()
    assert resolve_data_root("~/d") == (tmp_path / "home" / "d").resolve()


def test_windows_cache_dir(tmp_path, monkeypatch):
    fake_os = types.SimpleNamespace(name="nt", environ={"LOCALAPPDATA": str(tmp_path / "Local")}, path=os.path)
    monkeypatch.setattr(root_module, "os", fake_os)
    assert resolve_data_root() == tmp_path / "Local" / "vaelab" / "data"


def _tiny_set(n=5):
    return ImageSet(
        images=torch.arange(n * 4, dtype=torch.uint8).reshape(n, 1, 2, 2),
        labels=torch.arange(n),
        class_names=tuple("abcde"),
        factors=torch.rand(n, 2),
        factor_names=("u", "v"),
    )


def test_imageset_helpers():
    full = _tiny_set()
    assert len(full) == 5 and full.image_shape == (1, 2, 2)
    part = full.subset(torch.tensor([4, 1]))
    assert part.labels.tolist() == [4, 1] and torch.equal(part.images, full.images[[4, 1]])
    assert torch.equal(part.factors, full.factors[[4, 1]]) and part.factor_names == ("u", "v")
    assert part.class_names == full.class_names
    unlabelled = ImageSet(full.images, None, None)
    assert unlabelled.subset(torch.tensor([0])).labels is None


@pytest.mark.parametrize(
    "change",
    [
        {"images": torch.zeros(2, 1, 2, 2)},  # float
        {"images": torch.zeros(2, 2, 2, dtype=torch.uint8)},  # 3-D
        {"images": torch.zeros(2, 1, 2, 4, dtype=torch.uint8)[..., ::2]},  # not contiguous
        {"labels": torch.zeros(3, dtype=torch.int64)},
        {"labels": torch.zeros(2, dtype=torch.int32)},
        {"factors": torch.zeros(2, 3)},  # 3 columns, 2 names
        {"factor_names": None},
    ],
)
def test_imageset_rejects_bad_tensors(change):
    fields = dict(
        images=torch.zeros(2, 1, 2, 2, dtype=torch.uint8),
        labels=torch.zeros(2, dtype=torch.int64),
        class_names=None,
        factors=torch.zeros(2, 2),
        factor_names=("u", "v"),
    )
    with pytest.raises(ValueError):
        ImageSet(**{**fields, **change})


def test_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root("rel").is_absolute() and resolve_data_root("rel") == Path(tmp_path / "rel").resolve()

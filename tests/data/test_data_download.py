"""Downloads against a local HTTP server: mirrors in turn, md5 checks, atomic writes, offline errors."""

import os

import numpy as np
import pytest
import torch

from vaelab.data import load_images
from vaelab.data.download import CHECKSUMS, MIRRORS, ensure_file
from vaelab.errors import VaelabError

from datafiles import closed_port, md5_of, write_idx, write_mnist_like

NAME = "train-labels-idx1-ubyte.gz"


@pytest.fixture
def served_labels(http_root, monkeypatch):
    """A tiny labels file on the local server, registered as mnist's with its md5: (bytes, base URL)."""
    folder, base = http_root
    path = write_idx(folder / NAME, np.arange(10, dtype=np.uint8))
    monkeypatch.setitem(CHECKSUMS, "mnist", {NAME: md5_of(path)})
    return path.read_bytes(), base


def test_first_mirror_404_second_works(served_labels, tmp_path, monkeypatch):
    content, base = served_labels
    monkeypatch.setitem(MIRRORS, "mnist", (base + "nothing-here/", base))
    directory = tmp_path / "root" / "mnist"
    path = ensure_file("mnist", NAME, directory, download=True)
    assert path == directory / NAME
    assert path.read_bytes() == content
    assert os.listdir(directory) == [NAME]  # no temporary file left


def test_unreachable_mirror_then_working_one(served_labels, tmp_path, monkeypatch):
    _, base = served_labels
    monkeypatch.setitem(MIRRORS, "mnist", (f"http://127.0.0.1:{closed_port()}/", base.rstrip("/")))
    assert ensure_file("mnist", NAME, tmp_path, download=True).is_file()


def test_md5_mismatch_leaves_nothing(served_labels, tmp_path, monkeypatch):
    _, base = served_labels
    monkeypatch.setitem(MIRRORS, "mnist", (base,))
    monkeypatch.setitem(CHECKSUMS, "mnist", {NAME: "0" * 32})
    directory = tmp_path / "mnist"
    with pytest.raises(VaelabError) as info:
        ensure_file("mnist", NAME, directory, download=True)
    message = str(info.value)
    assert "\n" not in message
    assert NAME in message and "0" * 32 in message and "wrong checksum" in message
    assert os.listdir(directory) == []


def test_all_mirrors_unreachable_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(MIRRORS, "mnist", (f"http://127.0.0.1:{closed_port()}/", f"http://127.0.0.1:{closed_port()}/"))
    directory = tmp_path / "mnist"
    with pytest.raises(VaelabError) as info:
        ensure_file("mnist", NAME, directory, download=True)
    message = str(info.value)
    assert "\n" not in message
    assert NAME in message and f"{directory}{os.sep}" in message and "--data-dir" in message
    assert os.listdir(directory) == []


def test_download_disabled(tmp_path):
    with pytest.raises(VaelabError, match=f"missing {NAME} in .*download disabled"):
        ensure_file("mnist", NAME, tmp_path, download=False)
    assert not (tmp_path / NAME).exists()


def test_local_file_with_bad_md5(tmp_path, monkeypatch):
    path = write_idx(tmp_path / NAME, np.arange(3, dtype=np.uint8))
    good = md5_of(path)
    monkeypatch.setitem(CHECKSUMS, "mnist", {NAME: good})
    assert ensure_file("mnist", NAME, tmp_path, download=False) == path
    write_idx(path, np.arange(4, dtype=np.uint8))  # changed file: size differs, so it is hashed again
    with pytest.raises(VaelabError, match=f"bad checksum for .*{NAME}.*expected md5 {good}, got .*delete"):
        ensure_file("mnist", NAME, tmp_path, download=False)


def test_load_images_downloads_the_whole_split(http_root, tmp_path, monkeypatch):
    folder, base = http_root
    arrays = write_mnist_like(folder)
    monkeypatch.setitem(CHECKSUMS, "mnist", {name: md5_of(folder / name) for name in arrays})
    monkeypatch.setitem(MIRRORS, "mnist", (base,))
    test = load_images("mnist", "test", data_dir=tmp_path)
    assert sorted(os.listdir(tmp_path / "mnist")) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert torch.equal(test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"]))
    assert test.labels.tolist() == [0, 1, 2, 3]


def test_unwritable_root_is_a_user_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(VaelabError, match="cannot create"):
        ensure_file("mnist", NAME, blocker / "mnist", download=True)


def test_datasets_download_fetches_every_split_ahead_of_time(http_root, tmp_path, monkeypatch, capsys):
    from vaelab.cli import main

    folder, base = http_root
    arrays = write_mnist_like(folder)
    monkeypatch.setitem(CHECKSUMS, "mnist", {name: md5_of(folder / name) for name in arrays})
    monkeypatch.setitem(MIRRORS, "mnist", (base,))
    assert main(["datasets", "--download", "mnist", "shapes", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"mnist: ready in {tmp_path / 'mnist'}" in out and "shapes: nothing to download" in out
    assert sorted(os.listdir(tmp_path / "mnist")) == sorted(arrays)
    assert "mnist          present" in out  # the table that follows says so


def test_offline_error_names_the_environment_variable(tmp_path):
    with pytest.raises(VaelabError, match="VAELAB_DATA_DIR"):
        load_images("mnist", "test", data_dir=tmp_path)

"""The operating system's errors are the user's: one line naming the path and what was being done, exit 2,
the last checkpoint intact, nothing computed lost."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from vaelab.cli import main
from vaelab.data.imageset import ImageSet
from vaelab.errors import VaelabError
from vaelab.evaluation import classifier

from clihelp import one_line_error
from fsfaults import fail_writes, fill, tmpfs


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def test_a_full_disk_while_training_keeps_the_checkpoint(run, capsys, monkeypatch):
    before = (run / "checkpoint.safetensors").read_bytes()
    with monkeypatch.context() as m:
        fail_writes(m)
        err = one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    assert "cannot write" in err and "no space left on device" in err
    assert (run / "checkpoint.safetensors").read_bytes() == before
    assert not list(run.rglob("*.vaelab-tmp"))
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0  # space again: it goes on


def test_a_really_full_disk_while_training(run, tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "size=4m") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (the mocked full disk covers it)")
        shutil.copytree(run, disk / "run")
        before = (disk / "run" / "checkpoint.safetensors").read_bytes()
        fill(disk)
        err = one_line_error(capsys, ["train", "--resume", str(disk / "run"), "--epochs", "2", "--no-progress"])
        assert "no space left on device" in err
        assert (disk / "run" / "checkpoint.safetensors").read_bytes() == before


def test_a_read_only_folder(run, tmp_path, capsys, monkeypatch):
    with tmpfs(tmp_path / "ro", "ro") as ro:
        if ro is None:
            fail_writes(monkeypatch, errno.EROFS)
            ro = tmp_path
        err = one_line_error(capsys, ["sample", str(run), "-n", "4", "-o", str(ro / "x.png")])
    assert "cannot write" in err and "Read-only file system" in err


def test_a_file_where_a_folder_should_be(run, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    err = one_line_error(capsys, ["sample", str(run), "-n", "4", "-o", str(tmp_path / "file.txt" / "x.png")])
    assert "cannot write" in err and "Not a directory" in err
    err = one_line_error(capsys, ["plot", str(run), "--only", "loss", "-o", str(tmp_path / "file.txt")])
    assert "Not a directory" in err or "File exists" in err


def test_missing_parents_of_an_output_are_made(run, tmp_path, capsys):
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "new" / "sub" / "x.png")]) == 0
    assert (tmp_path / "new" / "sub" / "x.png").is_file()


def test_evaluate_prints_its_numbers_before_saving(run, capsys):
    (run / "eval.json").mkdir()  # cannot be replaced by a file
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(["evaluate", str(run), "--iwae-k", "2", "--no-frechet"]))
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert "ELBO" in out and "nats" in out  # the numbers reached the user
    assert len(err.strip().splitlines()) == 1 and "eval.json" in err and "Traceback" not in err


def test_an_unwritable_classifier_cache_is_found_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("x")

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained before finding that the cache cannot be written")

    monkeypatch.setattr(classifier, "_train", must_not_train)
    images = torch.zeros(8, 1, 8, 8, dtype=torch.uint8)
    data = ImageSet(images, torch.arange(8) % 2, class_names=("a", "b"))
    with pytest.raises(VaelabError, match="cannot write the Fréchet classifier into .*VAELAB_CACHE_DIR"):
        classifier.load_or_train("toy", data, data, cache_dir=blocker)


def test_a_failed_plot_leaves_no_empty_plots_folder(run, capsys, monkeypatch):
    with monkeypatch.context() as m:
        fail_writes(m)
        assert "no space left on device" in one_line_error(capsys, ["plot", str(run), "--only", "loss"])
    assert not (run / "plots").exists()
    (run / "plots").mkdir()  # even an empty one left by an older vaelab does not hide the pictures
    assert main(["report", str(run), "--no-eval"]) == 0
    assert (run / "plots" / "loss.png").is_file()


def test_os_errors_left_uncaught_still_give_one_line(run, capsys, monkeypatch):
    """The boundary's last net: any OSError (here from reading a dataset) is one line naming the file."""

    def unreadable(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/mnist/train-images-idx3-ubyte.gz")

    monkeypatch.setattr("vaelab.cli.use.load_split", unreadable)
    err = one_line_error(capsys, ["reconstruct", str(run), "-o", str(run / "r.png")])
    assert err == ("vaelab: error: reconstruct: Permission denied: /data/mnist/train-images-idx3-ubyte.gz")

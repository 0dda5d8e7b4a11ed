"""Writing a file never replaces what is not a regular file of ours (vaelab.files.write_bytes, used by every writer)."""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
from pathlib import Path

import pytest

from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.files import TEMP_SUFFIX, display_name, write_bytes, write_text

from clihelp import one_line_error
from fsfaults import fail_writes, fill, tmpfs

SRC = Path(__file__).resolve().parents[1] / "src" / "vaelab"


def _kind(path: Path) -> int:
    return os.lstat(path).st_mode


def test_a_regular_file_is_replaced_whole_with_normal_permissions(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "one")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask  # not mkstemp's private 0600
    os.chmod(target, 0o640)
    write_text(target, "two")
    assert target.read_text() == "two"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640  # the user's choice kept
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_missing_parent_folder_is_made(tmp_path):
    assert write_text(tmp_path / "a" / "b" / "c.txt", "x").read_text() == "x"


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    real = tmp_path / "real.png"
    real.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    write_bytes(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new"
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "made.png")
    write_bytes(dangling, b"made")
    assert dangling.is_symlink() and (tmp_path / "made.png").read_bytes() == b"made"


def test_a_symlink_loop_is_one_line(tmp_path):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(VaelabError, match="cannot write .*loop.png: Too many levels of symbolic links"):
        write_bytes(loop, b"x")


def test_a_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_bytes(fifo, b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(_kind(fifo))
    assert os.listdir(tmp_path) == ["fifo.png"]


def test_dev_null_and_a_device_node_are_written_through(tmp_path):
    before = os.stat("/dev/null")
    write_bytes("/dev/null", b"nothing")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the same device as /dev/null
    except PermissionError:
        pytest.skip("mknod needs root")
    write_bytes(node, b"into the device")
    assert stat.S_ISCHR(_kind(node)) and os.listdir(tmp_path) == ["null"]


def test_dash_is_standard_output(capsysbinary):
    write_bytes("-", b"\x89PNG...")
    assert capsysbinary.readouterr().out == b"\x89PNG..."


@pytest.mark.parametrize("make, kind", [(lambda p: p.mkdir(), "directory")])
def test_what_cannot_be_written_is_refused_in_one_line(tmp_path, make, kind):
    target = tmp_path / "x.png"
    make(target)
    with pytest.raises(VaelabError, match=f"refusing to write .*x.png: it is a {kind}, not a file"):
        write_bytes(target, b"x")
    assert target.is_dir()


def test_a_block_device_is_refused(tmp_path):
    node = tmp_path / "disk"
    try:
        os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(7, 0))  # a loop device's number; never opened
    except PermissionError:
        pytest.skip("mknod needs root")
    with pytest.raises(VaelabError, match="it is a block device"):
        write_bytes(node, b"x")
    assert stat.S_ISBLK(_kind(node))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.jsonl"
    target.write_text("kept\n")
    fail_writes(monkeypatch)
    with pytest.raises(VaelabError, match=r"cannot write .*metrics.jsonl: no space left on device"):
        write_text(target, "x" * 10000)
    assert target.read_text() == "kept\n"
    assert os.listdir(tmp_path) == ["metrics.jsonl"]


def test_a_really_full_disk_keeps_the_old_file(tmp_path):
    with tmpfs(tmp_path / "small") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (the mocked full disk above covers it)")
        target = disk / "checkpoint.safetensors"
        write_bytes(target, b"old" * 1000)
        fill(disk)
        with pytest.raises(VaelabError, match="no space left on device"):
            write_bytes(target, b"new" * 100_000)
        assert target.read_bytes() == b"old" * 1000
        assert sorted(os.listdir(disk)) == ["checkpoint.safetensors", "filler"]


def test_temp_files_have_unique_names_with_vaelabs_suffix(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        return real_replace(src, dst)

    monkeypatch.setattr("vaelab.files.os.replace", spy)
    for _ in range(3):
        write_text(tmp_path / "config.toml", "x")
    assert len(set(seen)) == 3
    assert all(re.fullmatch(r"\.config\.toml\..+" + re.escape(TEMP_SUFFIX), name) for name in seen)


def test_names_print_on_one_line():
    assert display_name("a\nb\tc") == "a\\nb\\tc"
    assert display_name(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"
    assert display_name("übung.png") == "übung.png"


# ---------------------------------------------------------------- through the command line


def test_sample_onto_dev_null_leaves_it_a_device(tiny_run, capsys):
    assert main(["sample", str(tiny_run), "-n", "4", "-o", "/dev/null"]) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_sample_onto_a_link_and_a_fifo(tiny_run, tmp_path, capsys):
    real = tmp_path / "real.png"
    link = tmp_path / "link.png"
    link.symlink_to(real)
    assert main(["sample", str(tiny_run), "-n", "4", "-o", str(link)]) == 0
    assert link.is_symlink() and real.read_bytes().startswith(b"\x89PNG")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert main(["sample", str(tiny_run), "-n", "4", "-o", str(fifo)]) == 0
    reader.join(10)
    assert got[0].startswith(b"\x89PNG") and stat.S_ISFIFO(_kind(fifo))


def test_sample_to_standard_output(tiny_run, capsysbinary):
    assert main(["sample", str(tiny_run), "-n", "4", "-o", "-"]) == 0
    assert capsysbinary.readouterr().out.startswith(b"\x89PNG")  # the image alone, no path printed after it


def test_sample_onto_a_folder_is_one_line(tiny_run, tmp_path, capsys):
    (tmp_path / "out.png").mkdir()
    assert "it is a directory" in one_line_error(capsys, ["sample", str(tiny_run), "-o", str(tmp_path / "out.png")])


def test_every_writer_goes_through_vaelab_files():
    """No module but vaelab.files renames temp files or saves straight to a path (the dataset cache aside)."""
    allowed = {"files.py", "data/download.py", "data/cifar.py"}  # downloads and archive extraction: the cache's own
    patterns = [
        r"os\.replace\(",
        r"\.write_text\(",
        r"\.write_bytes\(",
        r"save_file\(",
        r"mkstemp\(",
        r"savefig\([^)]*(path|tmp)",
        r"\.save\((path|tmp|out)",
    ]
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel in allowed:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if any(re.search(p, line) for p in patterns):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_errno_names_are_readable(tmp_path, monkeypatch):
    fail_writes(monkeypatch, errno.EROFS)
    with pytest.raises(VaelabError, match="cannot write .*: Read-only file system"):
        write_text(tmp_path / "x.txt", "x")

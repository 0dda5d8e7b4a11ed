"""Every file vaelab writes goes through here: atomic where it can be, never over what is not a file of ours.

`write_bytes(path, data)` is the one writer (images, CSV, JSON, TOML,
checkpoints, reports, plots render to bytes first, then call it):

- a regular file, or a new name: the bytes go to a uniquely named temp file
  in the same folder (`.NAME.XXXXXXXX.vaelab-tmp`), which is renamed over the
  target, so a kill mid-write leaves the old file whole; the temp file is
  removed on every failure; the new file has the old file's permissions, or
  the usual ones (0666 less the umask) when it is new;
- `-`: standard output;
- a character device (`/dev/null`, a terminal), a FIFO, or anything under
  `/dev/` or `/proc/` (`/dev/stdout`, `/dev/fd/3`): written through, in
  place, as a shell's `>` would: never replaced;
- a symbolic link: followed (the file it points to is written, the link
  stays a link);
- a directory, a block device or a socket: refused with one line.

The operating system's errors (a full disk, a read-only folder, a missing
permission, a file where a folder should be) become a `VaelabError` naming
the path and what was being done.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import VaelabError

TEMP_SUFFIX = ".vaelab-tmp"  # every temp file vaelab makes ends so; nothing else is ever cleaned up
_PASS_THROUGH_ROOTS = ("/dev/", "/proc/")


def write_text(path: str | Path, text: str, *, durable: bool = False) -> Path:
    """`write_bytes` of `text` in UTF-8."""
    return write_bytes(path, text.encode("utf-8"), durable=durable)


def write_bytes(path: str | Path, data: bytes, *, durable: bool = False) -> Path:
    """Write `data` to `path` as described in the module docstring; returns the path written.

    `durable` also flushes the file (and the folder's entry) to the disk
    before returning: for checkpoints, which must survive a power cut.
    """
    if str(path) == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return Path("-")
    path = Path(path)
    with os_errors(f"cannot write {path}"):
        target = _target(path)
        if target is None:  # a device, a FIFO, the process's own streams: write in place
            with open(path, "wb") as f:
                f.write(data)
            return path
        _write_replacing(target, data, durable)
    return path


def is_stream(path: str | Path) -> bool:
    """Whether writing `path` streams into something that is not a file (`-`, a device, a FIFO, /dev/stdout):
    the command then prints nothing else on standard output."""
    if str(path) == "-":
        return True
    try:
        return _target(Path(path)) is None
    except (VaelabError, OSError):
        return False


def check_can_write(path: str | Path) -> None:
    """Fail now, before minutes of work, when `path` could not be written later (what `write_bytes` refuses,
    or a folder it cannot write into)."""
    if str(path) == "-":
        return
    path = Path(path)
    with os_errors(f"cannot write {path}"):
        target = _target(path)
    if target is not None:
        check_writable_folder(target.parent, str(target.name))


def _target(path: Path) -> Path | None:
    """The regular file to replace for `path`, or None to write through; refuses what must not be touched."""
    if os.path.abspath(path).startswith(_PASS_THROUGH_ROOTS):
        kind = _kind(path, follow=True)
        if kind in ("directory", "block device", "socket"):
            raise VaelabError(f"refusing to write {path}: it is a {kind}, not a file")
        return None
    target = _follow(path) if path.is_symlink() else path
    kind = _kind(target, follow=False)
    if kind in (None, "file"):
        return target
    if kind in ("character device", "FIFO"):
        return None
    raise VaelabError(f"refusing to write {path}: it is a {kind}, not a file")


def _follow(link: Path) -> Path:
    """The file a link points to, through any chain of links; a loop is the system's ELOOP error."""
    try:
        return Path(os.path.realpath(link, strict=True))
    except FileNotFoundError:  # a dangling link: write the file it names, as `>` would
        return Path(os.path.realpath(link))


def _kind(path: Path, *, follow: bool) -> str | None:
    """What `path` is ('file', 'directory', 'FIFO', ...), or None when nothing is there."""
    try:
        mode = os.stat(path, follow_symlinks=follow).st_mode
    except FileNotFoundError:
        return None
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symbolic link"),
    ):
        if test(mode):
            return name
    return "special file"


def _write_replacing(target: Path, data: bytes, durable: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # mkstemp makes it private; what we write is an ordinary file
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (where the system allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files of writes into `folder` that a kill interrupted (only vaelab's own, not below it)."""
    removed = []
    if folder.is_dir():
        for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def check_readable_file(path: Path, what: str) -> None:
    """A one-line error unless `path` is a regular file (a FIFO would hang a reader forever)."""
    with os_errors(f"cannot read {what} {path}"):
        kind = _kind(path, follow=True)
    if kind is None:
        raise VaelabError(f"no such {what}: {path}")
    if kind != "file":
        raise VaelabError(f"{path} is a {kind}, not a {what} file")


def check_writable_folder(folder: Path, what: str) -> None:
    """Fail now, not after minutes of work, when nothing can be written into `folder` (made if missing)."""
    with os_errors(f"cannot write {what} into {folder}"):
        folder.mkdir(parents=True, exist_ok=True)  # a user asking for out/sub/x.png wants out/sub made
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".probe.", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(tmp)


@contextlib.contextmanager
def os_errors(doing: str) -> Iterator[None]:
    """Turn an OSError inside the block into one line: what was being done, then why."""
    try:
        yield
    except OSError as e:
        raise VaelabError(f"{doing}: {describe_os_error(e)}") from None


def describe_os_error(e: OSError) -> str:
    """'No space left on device' or 'Permission denied: /x/y' (the file named when it differs)."""
    reason = e.strerror or (os.strerror(e.errno) if e.errno else None) or str(e) or type(e).__name__
    if e.errno == errno.ENOSPC:
        reason = "no space left on device (free some disk space and try again)"
    name = e.filename if e.filename is not None else None
    return f"{reason}: {name}" if name is not None else reason


def display_name(name: str) -> str:
    """A file name safe to print on one line: undecodable bytes and control characters escaped."""
    out = []
    for ch in name:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            out.append(ch.encode("unicode_escape").decode("ascii") if code < 0xD800 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)

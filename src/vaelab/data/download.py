"""Get a dataset file: check a local copy's md5, or fetch it from the official mirrors.

A file `F` of dataset `D` lives at `ROOT/D/F`. When it is missing (and download
is allowed) each base URL in `MIRRORS[D]` is tried in turn as `base + F`; the
body is streamed into a temporary file in the same folder, its md5 compared
with `CHECKSUMS[D][F]`, and only then moved into place with `os.replace`, so a
failed or partial download leaves nothing behind.

Overriding mirrors: `MIRRORS` and `CHECKSUMS` are plain module-level dicts.
Tests (or a user with a local mirror) replace entries, e.g.
`monkeypatch.setitem(vaelab.data.download.MIRRORS, "mnist", ("http://127.0.0.1:8000/",))`.
There is deliberately no environment variable for this.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import VaelabError

MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

# Official md5s (see shared/data/README.md). A file not listed here is not checked.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    },
}

TIMEOUT_S = 30
_CHUNK = 1 << 20
# Errors that mean "this mirror did not work"; other OSErrors are local (disk full, no permission).
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)

_verified_md5: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> md5, hashed once per process


def file_md5(path: Path) -> str:
    """md5 hex digest of `path`, remembered while the file's size and mtime stay the same."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified_md5:
        digest = hashlib.md5()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
        _verified_md5[key] = digest.hexdigest()
    return _verified_md5[key]


def ensure_file(dataset: str, filename: str, directory: Path, *, download: bool) -> Path:
    """Path of `directory/filename`, md5-checked, downloaded first if missing and allowed.

    Raises VaelabError (one line: file, folder, what to do) when the file is
    missing and cannot be fetched, or when its md5 is wrong.
    """
    path = directory / filename
    expected = CHECKSUMS.get(dataset, {}).get(filename)
    if path.is_file():
        if expected is not None:
            try:
                got = file_md5(path)
            except OSError as e:
                raise VaelabError(f"{dataset}: cannot read {path} ({e.strerror}); check its permissions") from None
            if got != expected:
                raise VaelabError(
                    f"{dataset}: bad checksum for {path} (expected md5 {expected}, got {got}); "
                    f"delete it to download it again, or replace it with a good copy"
                )
        return path
    if not download:
        raise VaelabError(
            f"{dataset}: missing {filename} in {directory}{os.sep} (download disabled); "
            f"put the file there, or point --data-dir or VAELAB_DATA_DIR at a folder that has {dataset}/{filename}"
        )
    _download(dataset, filename, directory, expected)
    return path


def _download(dataset: str, filename: str, directory: Path, expected: str | None) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VaelabError(
            f"{dataset}: cannot create {directory}{os.sep} to download {filename} ({e.strerror}); "
            f"pass a writable --data-dir"
        ) from None
    mismatches: list[str] = []
    for base in MIRRORS.get(dataset, ()):
        url = base.rstrip("/") + "/" + filename
        try:
            got = _fetch(url, directory / filename, expected)
        except _NETWORK_ERRORS:
            continue
        except OSError as e:
            raise VaelabError(
                f"{dataset}: cannot write {filename} in {directory}{os.sep} ({e.strerror}); "
                f"free some space or pass a writable --data-dir"
            ) from None
        if got is None:
            return
        mismatches.append(f"md5 {got} from {url}")
    if mismatches:
        raise VaelabError(
            f"{dataset}: downloaded {filename} has the wrong checksum (expected md5 {expected}, "
            f"got {'; '.join(mismatches)}); nothing was kept: try again later, "
            f"or put a good copy in {directory}{os.sep}"
        )
    raise VaelabError(
        f"{dataset}: cannot get {filename} (offline or all mirrors failed); put the file in {directory}{os.sep}, "
        f"or point --data-dir or VAELAB_DATA_DIR at a folder that has {dataset}/{filename}"
    )


def _fetch(url: str, target: Path, expected: str | None) -> str | None:
    """Stream `url` to `target` atomically. Returns None on success, the wrong md5 otherwise."""
    request = urllib.request.Request(url, headers={"User-Agent": "vaelab"})
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            size = response.headers.get("Content-Length")
            with tqdm(
                total=int(size) if size and size.isdigit() else None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=target.name,
                disable=None,  # no bar when stderr is not a terminal
                leave=False,
            ) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
        got = digest.hexdigest()
        if expected is not None and got != expected:
            return got
        os.replace(tmp_name, target)
        tmp_name = None
        return None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass

"""Fixtures for the data tests: a hermetic environment, the real data root, a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

from vaelab.data import download

from datafiles import closed_port

# Read before the autouse fixture below clears it for every test.
_REAL_DATA_DIR = os.environ.get("VAELAB_DATA_DIR")


@pytest.fixture(autouse=True)
def hermetic(monkeypatch, tmp_path_factory):
    """No test reaches the internet or writes to the user's cache."""
    monkeypatch.delenv("VAELAB_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    dead = f"http://127.0.0.1:{closed_port()}/"
    for name in list(download.MIRRORS):
        monkeypatch.setitem(download.MIRRORS, name, (dead,))


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real data root from VAELAB_DATA_DIR (CI: ../shared/data); skips when unset."""
    if not _REAL_DATA_DIR:
        pytest.skip("VAELAB_DATA_DIR is not set: no real datasets to check (CI sets it to ../shared/data)")
    root = Path(_REAL_DATA_DIR).expanduser().resolve()
    if not root.is_dir():
        pytest.skip(f"VAELAB_DATA_DIR={_REAL_DATA_DIR} is not a folder")
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture
def http_root(tmp_path):
    """(folder, base URL): a local HTTP server serving `folder`; unknown paths answer 404."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()

"""Shared fixtures: no test reaches the internet; real data comes from VAELAB_DATA_DIR."""

from __future__ import annotations

import os

# The same thread count in every test and every process it starts (not the machine's momentary load, which
# `vaelab.runtime.resolve_threads` would otherwise follow): bit-for-bit comparisons stay comparable.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest

from vaelab.data import download

REPO = Path(__file__).resolve().parents[1]


def _dead_url() -> str:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def offline_mirrors(monkeypatch):
    """Every download in the tests goes to a closed local port unless a test serves files itself."""
    dead = _dead_url()
    for name in list(download.MIRRORS):
        monkeypatch.setitem(download.MIRRORS, name, (dead,))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets: $VAELAB_DATA_DIR (CI: ../shared/data), else ../shared/data beside the repo."""
    root = Path(os.environ.get("VAELAB_DATA_DIR") or REPO.parent / "shared" / "data").expanduser()
    if not (root / "mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found under {root}: set VAELAB_DATA_DIR")
    return root.resolve()


def write_cifar_fixture(root: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> Path:
    """A tiny dataset in CIFAR-10's python layout (5 train batches, a test batch, meta) under root/cifar10/."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(n: int, label: str) -> dict:
        return {
            b"batch_label": label.encode(),
            b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(n_train // 5, f"training batch {i} of 5"), f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(n_test, "testing batch 1 of 1"), f, protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"num_cases_per_batch": n_train // 5, b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    return root


@pytest.fixture
def cifar_root(tmp_path) -> Path:
    return write_cifar_fixture(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished one-epoch run on drawn shapes (mlp2, 16x16, a few seconds). Copy it before changing it."""
    import vaelab

    out = tmp_path_factory.mktemp("tiny") / "run"
    vaelab.train(
        "mlp2",
        dataset="shapes",
        image_size=16,
        latent_dim=2,
        epochs=1,
        limit=64,
        val_size=32,
        batch_size=32,
        sample_grid=4,
        out=out,
        progress=False,
        log=lambda line: None,
    )
    return out

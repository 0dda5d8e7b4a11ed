"""Tiny trained runs shared by the evaluation tests, and a private classifier cache."""

from __future__ import annotations

import pytest

import vaelab

QUIET = dict(progress=False, log=lambda line: None)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """No test writes a classifier into the user's cache."""
    monkeypatch.setenv("VAELAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory, data_root):
    """mlp2 on real MNIST grey levels, one epoch on 256 images (Bernoulli on grey: no bits/dim)."""
    out = tmp_path_factory.mktemp("runs") / "mlp2"
    vaelab.train("mlp2", epochs=1, limit=256, val_size=64, batch_size=64, out=out, data_dir=data_root, **QUIET)
    return out


@pytest.fixture(scope="session")
def binary_run(tmp_path_factory):
    """mlp2 on statically binarised 16x16 shapes, one epoch (Bernoulli on binary data: bits/dim defined)."""
    out = tmp_path_factory.mktemp("runs") / "shapes-binary"
    vaelab.train(
        "mlp2",
        dataset="shapes",
        image_size=16,
        binarize="static",
        latent_dim=4,
        epochs=1,
        limit=512,
        val_size=64,
        batch_size=64,
        out=out,
        **QUIET,
    )
    return out

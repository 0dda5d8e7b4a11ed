"""`vaelab encode` and `vaelab decode`: real MNIST test images through a tiny trained run and back, and every
bad input refused in one line (exit 2) with nothing written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from vaelab.cli import main
from vaelab.data import load_images
from vaelab.export.images import png_names

from clihelp import one_line_error


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, data_root):
    """cvae2 on 64 MNIST images, one epoch (seconds)."""
    out = tmp_path_factory.mktemp("encode") / "run"
    vaelab.train("cvae2", limit=64, epochs=1, data_dir=data_root, out=out, progress=False, log=lambda line: None)
    return out


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory, data_root):
    """Four real MNIST test images as PNGs: three in a folder (one in a subfolder), one beside it."""
    root = tmp_path_factory.mktemp("images")
    images = load_images("mnist", "test", data_dir=data_root).images[:4]  # (4, 1, 28, 28) uint8
    paths = [root / "digits" / "a.png", root / "digits" / "b.png", root / "digits" / "sub" / "c.png", root / "d.png"]
    for path, image in zip(paths, images):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(path)
    return root, images


def test_encode_then_decode_matches_the_model_in_python(mnist_run, mnist_files, tmp_path, monkeypatch, capsys):
    root, images = mnist_files
    monkeypatch.chdir(root)
    out = tmp_path / "latents.npz"
    assert main(["encode", str(mnist_run), "digits", "d.png", "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"4 images encoded: {out}"
    with np.load(out) as npz:
        mu, logvar, files = npz["mu"], npz["logvar"], list(npz["files"])
        assert int(npz["latent_dim"]) == 2 and str(npz["preset"]) == "cvae2" and int(npz["version"]) == 1
    assert files == ["digits/a.png", "digits/b.png", "digits/sub/c.png", "d.png"]
    assert mu.shape == logvar.shape == (4, 2) and mu.dtype == logvar.dtype == np.float32

    model = vaelab.load(mnist_run)
    with torch.no_grad():
        q = model.encode(images)  # the PNGs hold the same pixels: 28x28 grey needs no resizing
        expected = model.decode(q.mu)
    np.testing.assert_allclose(mu, q.mu.numpy(), atol=1e-6)
    np.testing.assert_allclose(logvar, q.logvar.numpy(), atol=1e-6)

    assert main(["decode", str(mnist_run), str(out), "-o", str(tmp_path / "png")]) == 0
    names = ["digits_a.png", "digits_b.png", "digits_sub_c.png", "d.png"]
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == sorted(names)
    for name, want in zip(names, expected):
        got = np.asarray(Image.open(tmp_path / "png" / name))
        assert got.shape == (28, 28)
        assert np.abs(got.astype(int) - (want[0].numpy() * 255).round().astype(int)).max() <= 1


def test_decode_prefers_z_and_numbers_rows_without_files(mnist_run, tmp_path):
    z = np.array([[0.0, 0.0], [2.0, -1.0]], dtype=np.float64)
    np.savez(tmp_path / "z.npz", z=z, mu=np.full((3, 2), 9.0))
    assert main(["decode", str(mnist_run), str(tmp_path / "z.npz"), "-o", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000.png", "00001.png"]
    with torch.no_grad():
        want = vaelab.load(mnist_run).decode(torch.tensor(z, dtype=torch.float32))[1, 0]
    got = np.asarray(Image.open(tmp_path / "out" / "00001.png")).astype(int)
    assert np.abs(got - (want.numpy() * 255).round().astype(int)).max() <= 1


def test_png_names_are_sanitised_and_unique():
    assert png_names(["a/b.png", "a_b.jpg", "../x y.png", "A_B.png", ".hid"], 5) == [
        "a_b.png",
        "a_b-2.png",
        "x_y.png",
        "A_B-3.png",
        "hid.png",
    ]
    assert png_names(None, 2) == ["00000.png", "00001.png"]


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_bad_inputs_are_one_line_errors_and_write_nothing(mnist_run, mnist_files, tmp_path, capsys):
    root, _ = mnist_files
    run = str(mnist_run)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    out = tmp_path / "out.npz"
    cases = [
        (["encode", str(tmp_path / "nope"), str(root), "-o", str(out)], "nope"),
        (["encode", run, str(tmp_path / "missing.png"), "-o", str(out)], "no such file or folder"),
        (["encode", run, str(text), "-o", str(out)], "cannot read as an image"),
        (["encode", run, str(root), "-o", str(tmp_path)], "directory"),
        (["decode", run, str(tmp_path / "missing.npz"), "-o", str(tmp_path / "d")], "no such latents file"),
        (["decode", run, str(text), "-o", str(tmp_path / "d")], "not a readable .npz"),
        (["decode", run, _npz(tmp_path / "empty.npz", x=np.zeros(2)), "-o", str(tmp_path / "d")], "neither"),
        (["decode", run, _npz(tmp_path / "w.npz", mu=np.zeros((2, 3))), "-o", str(tmp_path / "d")], "latent_dim is 2"),
        (["decode", run, _npz(tmp_path / "i.npz", z=np.zeros((2, 2), int)), "-o", str(tmp_path / "d")], "int64"),
        (["decode", run, _npz(tmp_path / "n.npz", z=np.array([[0, np.nan]])), "-o", str(tmp_path / "d")], "finite"),
        (["decode", run, _npz(tmp_path / "1d.npz", z=np.zeros(2)), "-o", str(tmp_path / "d")], "must be (N, 2)"),
        (["decode", run, _npz(tmp_path / "ok.npz", z=np.zeros((1, 2))), "-o", str(a_file)], "not a folder"),
        (["decode", run, str(tmp_path / "ok.npz"), "-o", str(tmp_path / "d"), "--temperature", "1"], "one latent"),
    ]
    for argv, message in cases:
        err = one_line_error(capsys, argv)
        assert message in err, (argv, err)
    assert not out.exists() and not (tmp_path / "d").exists()

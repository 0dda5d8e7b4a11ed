"""Issue 21.6: odd file names written and printed safely, 16-bit PNGs scaled to 8 bits, bad pixels refused."""

from __future__ import annotations

import csv
import io
import os
import shutil
import struct
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import vaelab
from vaelab.cli import main
from vaelab.data import load_images
from vaelab.errors import VaelabError
from vaelab.evaluation.anomaly import read_image_folder
from vaelab.models.registry import DECODERS, ENCODERS

from clihelp import one_line_error

QUIET = {"progress": False, "log": lambda line: None}
PNG_END = b"IEND\xaeB`\x82"


@pytest.fixture
def run(tiny_run, tmp_path):
    """A copy of the session's tiny real run (see conftest.py)."""
    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


# --------------------------------------------------------------------------- file names


@pytest.fixture
def odd_folder(tmp_path):
    """Three images: a plain name, one whose bytes are not UTF-8, and one holding a newline."""
    if sys.platform != "linux":
        pytest.skip("file names that are not UTF-8 are a Linux (bytes) file system matter")
    folder = tmp_path / "images"
    folder.mkdir()
    for i, name in enumerate((b"plain.png", b"caf\xe9.png", b"new\nline.png")):
        Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(os.path.join(os.fsencode(folder), name), "PNG")
    return folder


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_anomaly_csv_of_odd_names_is_utf8_and_quoted(capsys, run, odd_folder, tmp_path):
    out = tmp_path / "scores.csv"
    assert main(["anomaly", str(run), "--input", str(odd_folder), "-o", str(out)]) == 0
    rows = _rows(out.read_bytes().decode("utf-8"))  # UTF-8 throughout: the undecodable byte is escaped
    assert rows[0] == ["index", "file", "score"]
    assert sorted(r[1] for r in rows[1:]) == ["caf\\xe9.png", "new\nline.png", "plain.png"]
    stdout = capsys.readouterr().out.splitlines()
    assert len(stdout) == 2 and stdout[1] == f"scores: {out}"


def test_anomaly_prints_odd_names_on_one_line(capsys, run, odd_folder):
    assert main(["anomaly", str(run), "--input", str(odd_folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("most anomalous: ")
    assert "caf\\xe9.png" in lines[1] and "new\\nline.png" in lines[1]


def test_anomaly_csv_to_stdout_keeps_stdout_for_the_csv(capsys, run, odd_folder):
    assert main(["anomaly", str(run), "--input", str(odd_folder), "-o", "-"]) == 0
    captured = capsys.readouterr()
    rows = _rows(captured.out)
    assert rows[0] == ["index", "file", "score"] and len(rows) == 4
    assert "3 images scored by -ELBO" in captured.err and "scores:" not in captured.err


@pytest.mark.parametrize("command", ["sample", "reconstruct"])
def test_png_to_stdout_is_the_only_thing_there(capsysbinary, run, command):
    assert main([command, str(run), "-n", "4", "-o", "-"]) == 0
    data = capsysbinary.readouterr().out
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(PNG_END) and data.count(PNG_END) == 1
    Image.open(io.BytesIO(data)).load()


# --------------------------------------------------------------------------- 16-bit PNGs


def _png16(path, values: np.ndarray, color_type: int) -> None:
    """A 16-bit PNG written by hand (Pillow writes 16-bit grey only): values (H, W) or (H, W, channels)."""
    h, w = values.shape[:2]
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("grayscale", [True, False])
def test_16_bit_grey_pngs_scale_to_8_bits(tmp_path, grayscale):
    folder = tmp_path / "grey16"
    folder.mkdir()
    for i, level in enumerate((0, 128, 32768, 65535)):
        Image.fromarray(np.full((8, 8), level, np.uint16)).save(folder / f"{i}.png")  # Pillow mode I;16
    assert Image.open(folder / "2.png").mode == "I;16"
    images, _, _ = read_image_folder(folder, (1 if grayscale else 3, 8, 8))
    assert images.amin(dim=(1, 2, 3)).tolist() == [0, 0, 128, 255] == images.amax(dim=(1, 2, 3)).tolist()
    data = load_images(f"folder:{folder}", "train", image_size=8, grayscale=grayscale)  # the same function
    assert set(data.images.unique().tolist()) <= {0, 128, 255}


def test_16_bit_grey_transparency_is_exact(tmp_path):
    values = np.full((8, 8), 32768, np.uint16)
    values[:, :4] = 32769  # the same 8-bit level, but not the transparent 16-bit value
    Image.fromarray(values).save(tmp_path / "t.png", transparency=32768)
    images, _, _ = read_image_folder(tmp_path, (1, 8, 8))
    assert images[0, 0, :, :3].unique().tolist() == [128] and images[0, 0, :, 5:].unique().tolist() == [0]


@pytest.mark.parametrize("color_type, channels", [(2, 3), (6, 4)])  # RGB, RGBA
def test_16_bit_colour_pngs_load_within_one_level(tmp_path, color_type, channels):
    levels = np.array([0, 128, 32768, 65535])
    values = np.repeat(levels[:, None], 2, axis=1)  # (4, 2) then every channel, alpha opaque
    values = np.stack([values] * 3 + ([np.full_like(values, 65535)] if channels == 4 else []), -1)
    _png16(tmp_path / "c.png", np.kron(values, np.ones((2, 4, 1), np.int64)), color_type)  # (8, 8, channels)
    image, _, _ = read_image_folder(tmp_path, (3, 8, 8))
    rows = image[0, 0, ::2, 0].tolist()  # one pixel per level
    assert all(abs(a - round(v / 257)) <= 1 for a, v in zip(rows, levels))


# --------------------------------------------------------------------------- the Python API


def test_forward_accepts_uint8_as_encode_does(run):
    model = vaelab.load(run)
    x = (torch.rand(3, *model.image_shape, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    torch.manual_seed(1)
    from_uint8 = model(x)
    torch.manual_seed(1)
    from_float = model(x.float() / 255)
    for name in ("elbo", "recon", "kl"):
        torch.testing.assert_close(from_uint8[name], from_float[name])
    torch.testing.assert_close(model.encode(x).mu, model.encode(x.float() / 255).mu)


def test_sample_zero_is_an_empty_batch(run):
    model = vaelab.load(run)
    assert model.sample(0).shape == (0, *model.image_shape)


@pytest.mark.parametrize(
    "bad, needle",
    [
        (2.0, "got values from 0 to 2"),
        (-0.5, "got values from -0.5 to 1"),
        (float("nan"), "got values from nan to nan"),
    ],
)
def test_pixels_outside_0_1_are_refused(run, bad, needle):
    model = vaelab.load(run)
    x = torch.rand(2, *model.image_shape)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, 1.0
    x[1, 0, 1, 1] = bad
    for use in (model, model.encode, model.reconstruct):
        with pytest.raises(VaelabError, match=rf"pixels must be in \[0, 1\] \(floats\) or uint8; {needle}"):
            use(x)


def test_pixels_of_another_type_are_refused(run):
    model = vaelab.load(run)
    with pytest.raises(VaelabError, match="images must be uint8 or floating point, got torch.int64"):
        model.encode(torch.zeros(1, *model.image_shape, dtype=torch.int64))


@pytest.fixture
def wrong_parts():
    @vaelab.register_encoder("test-wrong-size")
    def encoder(image_shape, out_features):
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(image_shape)), out_features + 3))

    @vaelab.register_encoder("test-wrong-input")
    def crashing(image_shape, out_features):
        return nn.Sequential(nn.Flatten(), nn.Linear(7, out_features))

    @vaelab.register_decoder("test-wrong-size")
    def decoder(image_shape, latent_dim, out_channels):
        _, h, w = image_shape
        return nn.Sequential(
            nn.Linear(latent_dim, out_channels * (h - 1) * w), nn.Unflatten(1, (out_channels, h - 1, w))
        )  # one row short

    yield
    ENCODERS._items.pop("test-wrong-size")
    ENCODERS._items.pop("test-wrong-input")
    DECODERS._items.pop("test-wrong-size")


@pytest.mark.parametrize(
    "parts, needle",
    [
        (
            {"encoder": "test-wrong-size"},
            (
                r"encoder 'test-wrong-size' returns \(2, 7\) for 1x32x32 images \(a batch of "
                r"2\); the diagonal-gaussian posterior of latent_dim 2 needs \(2, 4\)"
            ),
        ),
        (
            {"encoder": "test-wrong-input"},
            (
                r"encoder 'test-wrong-input' fails on 1x32x32 images \(a batch of 2\): "
                r"RuntimeError: .*"
            ),
        ),
        (
            {"decoder": "test-wrong-size"},
            (
                r"decoder 'test-wrong-size' returns \(2, 1, 31, 32\) for latent_dim 2 \(a "
                r"batch of 2\); the bernoulli likelihood of 1x32x32 images needs \(2, 1, 32, "
                r"32\)"
            ),
        ),
    ],
)
def test_a_network_of_the_wrong_size_is_caught_before_a_run_directory_exists(tmp_path, wrong_parts, parts, needle):
    with pytest.raises(VaelabError, match=needle):
        vaelab.train(
            "mlp2",
            out=tmp_path / "run",
            dataset="shapes",
            image_size=32,
            limit=32,
            val_size=16,
            epochs=1,
            **parts,
            **QUIET,
        )
    assert not (tmp_path / "run").exists()


def test_a_network_of_the_wrong_size_is_one_line_on_the_command_line(capsys, tmp_path, wrong_parts):
    config = tmp_path / "c.toml"
    config.write_text('[model]\nencoder = "test-wrong-input"\n')
    err = one_line_error(
        capsys,
        [
            "train",
            "--preset",
            "mlp2",
            "--dataset",
            "shapes",
            "--image-size",
            "32",
            "--limit",
            "32",
            "--val-size",
            "16",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert "encoder 'test-wrong-input' fails on 1x32x32 images" in err
    assert not (tmp_path / "run").exists()


def test_the_dry_run_leaves_batchnorm_statistics_alone():
    cfg = vaelab.presets()["cifar128"]
    torch.manual_seed(0)
    model = vaelab.build_model(cfg.model, cfg.objective, (3, 32, 32))
    assert model.training
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert int(m.num_batches_tracked) == 0 and torch.all(m.running_mean == 0)

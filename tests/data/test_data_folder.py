"""The folder:PATH dataset: formats, sizes, labels from subfolders, the fixed held-out split, bad files."""

import dataclasses
import io
import logging
import os
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from vaelab.config import DataConfig
from vaelab.data import load_images
from vaelab.data.folder import split_indices
from vaelab.errors import VaelabError
from vaelab.training.data import load_split

# A distinct colour per image (exact after resizing a flat PNG), so images can be identified.
COLOURS = [(10 * k, 255 - 10 * k, (37 * k) % 256) for k in range(20)]


def _flat(path, colour, size, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).convert(mode).save(path)


@pytest.fixture
def classes(tmp_path):
    """cats/ and dogs/ with PNG (RGB, RGBA, L, P) and JPEG files of several sizes, plus non-image files."""
    root = tmp_path / "pets"
    sizes = [(30, 20), (17, 41), (64, 64), (9, 9), (100, 13)]
    for k in range(10):
        folder = root / ("cats" if k < 6 else "dogs") / ("deep" if k == 3 else "")
        mode = ["RGB", "RGBA", "L", "P", "RGB"][k % 5]
        _flat(folder / f"img{k:02d}.png", COLOURS[k], sizes[k % 5], mode)
    _flat(root / "dogs" / "photo.jpg", (200, 30, 30), (50, 40))
    _flat(root / "dogs" / "photo2.JPEG", (30, 200, 30), (33, 47))
    (root / "dogs" / "notes.txt").write_text("not an image, ignored")
    (root / "cats" / ".hidden.png").write_bytes(b"AppleDouble junk, ignored")
    return root


def test_sizes_channels_and_labels(classes):
    train = load_images(f"folder:{classes}", "train", image_size=16)
    test = load_images(f"folder:{classes}", "test", image_size=16)
    assert train.images.shape == (11, 3, 16, 16) and test.images.shape == (1, 3, 16, 16)
    assert train.images.dtype == torch.uint8 and train.images.is_contiguous()
    assert train.class_names == test.class_names == ("cats", "dogs")
    assert sorted(train.labels.tolist() + test.labels.tolist()) == [0] * 6 + [1] * 6
    grey = load_images(f"folder:{classes}", "train", image_size=8, grayscale=True)
    assert grey.images.shape == (11, 1, 8, 8)


def test_default_size_is_64(classes):
    assert load_images(f"folder:{classes}", "test").image_shape == (3, 64, 64)


def test_split_is_disjoint_and_covering(tmp_path):
    for k, colour in enumerate(COLOURS):
        _flat(tmp_path / f"{k:02d}.png", colour, (12 + k, 20))
    seen = []
    for split in ("train", "test"):
        images = load_images(f"folder:{tmp_path}", split, image_size=4)
        assert images.labels is None and images.class_names is None
        seen += [tuple(images.images[i, :, 0, 0].tolist()) for i in range(len(images))]
        assert torch.all(images.images == images.images[:, :, :1, :1])  # flat colours stay flat
    assert sorted(seen) == sorted(COLOURS)
    assert len(load_images(f"folder:{tmp_path}", "test", image_size=4)) == 2


@given(st.integers(min_value=2, max_value=500))
def test_split_indices_partition(n):
    train, test = split_indices(n, "train"), split_indices(n, "test")
    assert len(test) == max(1, round(0.1 * n))
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(n))
    assert np.array_equal(test, split_indices(n, "test"))  # fixed seed


def test_a_prefix_of_the_test_split_mixes_class_subfolders():
    # Files are listed subfolder by subfolder; 10 classes of 100 files. The first 50 test images must not be
    # the first classes only (what `vaelab evaluate --limit 50` measures).
    classes = split_indices(1000, "test")[:50] // 100
    assert len(set(classes.tolist())) >= 8


def test_center_crop_keeps_aspect(tmp_path):
    # 40x20: red 10 columns | green 20 | blue 10 -> the centred 20x20 square is all green.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10, 0] = pixels[:, 10:30, 1] = pixels[:, 30:, 2] = 255
    for k in range(2):
        Image.fromarray(pixels).save(tmp_path / f"wide{k}.png")
    images = load_images(f"folder:{tmp_path}", "train", image_size=8).images
    assert torch.all(images[:, 1] == 255) and torch.all(images[:, 0] == 0) and torch.all(images[:, 2] == 0)


def test_mixed_layout_has_no_labels(classes):
    _flat(classes / "top.png", (1, 2, 3), (10, 10))
    assert load_images(f"folder:{classes}", "train", image_size=4).labels is None


def test_single_image(tmp_path):
    _flat(tmp_path / "only.png", (1, 2, 3), (5, 5))
    assert len(load_images(f"folder:{tmp_path}", "train", image_size=4)) == 1
    with pytest.raises(VaelabError, match="too few to hold out a test split"):
        load_images(f"folder:{tmp_path}", "test", image_size=4)


def test_errors(tmp_path):
    with pytest.raises(VaelabError, match="does not exist"):
        load_images(f"folder:{tmp_path / 'nope'}", "train")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(VaelabError, match="is not a folder"):
        load_images(f"folder:{tmp_path / 'file.png'}", "train")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(VaelabError, match="no images"):
        load_images(f"folder:{empty}", "train")
    with pytest.raises(VaelabError, match="needs a path"):
        load_images("folder:", "train")


def test_corrupt_file_is_named(tmp_path):
    for k in range(3):
        _flat(tmp_path / f"ok{k}.png", COLOURS[k], (8, 8))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(VaelabError, match=r"broken\.jpg: cannot read as an image"):
        for split in ("train", "test"):
            load_images(f"folder:{tmp_path}", split, image_size=8)


def _good_and(tmp_path, bad: dict[str, bytes], n_good=9):
    """n_good flat PNGs plus the given bad files, all directly in tmp_path."""
    for k in range(n_good):
        _flat(tmp_path / f"ok{k}.png", COLOURS[k], (8, 8))
    for name, payload in bad.items():
        (tmp_path / name).write_bytes(payload)
    return tmp_path


def _png(size=(40, 30), noisy=True):
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels if noisy else pixels * 0).save(out, "PNG")
    return out.getvalue()


def _png_with_size(width, height):
    """A 1x1 PNG whose header claims width x height (CRC fixed, so only the size is wrong)."""
    out = io.BytesIO()
    Image.new("1", (1, 1)).save(out, "PNG")
    data = out.getvalue()
    ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def _load_both(folder, **options):
    return [load_images(f"folder:{folder}", split, image_size=8, **options) for split in ("train", "test")]


@pytest.mark.parametrize(
    "name, payload, message",
    [
        ("zero.png", b"", r"zero\.png: cannot read as an image \(empty, cut short, or not PNG/JPEG/BMP/WEBP\)"),
        ("text.png", b"hello", r"text\.png: cannot read as an image \(empty, cut short"),
        ("cut.png", _png()[:2000], r"cut\.png: cannot read as an image \(OSError: image file is truncated"),
        # Pillow would hand an EPS to Ghostscript, whatever its suffix: only PNG/JPEG/BMP/WebP are opened.
        ("eps.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\n", r"eps\.png: .*not PNG/JPEG"),
        ("bomb.png", _png_with_size(100_000, 100_000), r"bomb\.png: .*DecompressionBombError"),
    ],
)
def test_bad_files_fail_at_load_time_naming_the_file(tmp_path, name, payload, message):
    folder = _good_and(tmp_path, {name: payload})
    with pytest.raises(VaelabError, match=message + r".*--skip-bad-files"):
        _load_both(folder)


def test_between_the_bomb_limits_pillow_only_warns_we_refuse(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    folder = _good_and(tmp_path, {"big.png": _png((150, 100), noisy=False)})  # 15_000 pixels: < 2x the limit
    with pytest.raises(VaelabError, match=r"big\.png: cannot read as an image \(DecompressionBombWarning"):
        _load_both(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_and_dangling_link_are_not_opened(tmp_path):
    folder = _good_and(tmp_path, {})
    os.mkfifo(folder / "pipe.png")  # opening it would block forever
    os.symlink(folder / "nowhere", folder / "link.png")
    with pytest.raises(VaelabError, match=r"(pipe|link)\.png: cannot read as an image \(not a regular file\)"):
        _load_both(folder)
    train, test = _load_both(folder, skip_bad_files=True)
    assert len(train) + len(test) == 9


def test_skip_bad_files_counts_and_names_them_once(tmp_path, caplog):
    bad = {"a_zero.png": b"", "b_cut.png": _png()[:2000], "c_text.jpg": b"hello"}
    folder = _good_and(tmp_path, bad, n_good=17)  # 20 files: 18 train, 2 test
    with caplog.at_level(logging.WARNING, logger="vaelab.data.folder"):
        train, test = _load_both(folder, skip_bad_files=True)
    assert len(train) + len(test) == 17
    skipped = [r.getMessage() for r in caplog.records]
    assert len(skipped) == (len(train) < 18) + (len(test) < 2)  # one line per split that had bad files
    assert sum(int(re.search(r"skipped (\d+) unreadable", m).group(1)) for m in skipped) == 3
    assert all("\n" not in m and "(" in m for m in skipped)
    assert all(name in " ".join(skipped) for name in bad)


def test_skipping_never_moves_images_between_splits(tmp_path):
    folder = _good_and(tmp_path, {}, n_good=20)

    def colours(split, **options):
        images = load_images(f"folder:{folder}", split, image_size=4, **options).images
        return {tuple(images[i, :, 0, 0].tolist()) for i in range(len(images))}

    clean = {split: colours(split) for split in ("train", "test")}
    for split in ("train", "test"):  # break one file of each split in turn
        victim = sorted(colours(split))[0]
        k = COLOURS.index(victim)
        (folder / f"ok{k}.png").write_bytes(b"")
        assert colours(split, skip_bad_files=True) == clean[split] - {victim}
        other = "test" if split == "train" else "train"
        assert colours(other, skip_bad_files=True) == clean[other]
        _flat(folder / f"ok{k}.png", COLOURS[k], (8, 8))


def test_skip_bad_files_still_fails_when_nothing_is_readable(tmp_path):
    for k in range(3):
        (tmp_path / f"bad{k}.png").write_bytes(b"not an image")
    with pytest.raises(VaelabError, match=r"none of the 2 files of the train split is readable"):
        load_images(f"folder:{tmp_path}", "train", skip_bad_files=True)


def test_skip_bad_files_is_wired_from_the_config(tmp_path):
    folder = _good_and(tmp_path, {"bad.png": b""})
    cfg = DataConfig(name=f"folder:{folder}", image_size=8)
    with pytest.raises(VaelabError, match=r"bad\.png"):
        [load_split(cfg, split) for split in ("train", "test")]
    sizes = [len(load_split(dataclasses.replace(cfg, skip_bad_files=True), split)) for split in ("train", "test")]
    assert sum(sizes) == 9

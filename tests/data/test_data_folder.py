"""The folder:PATH dataset: formats, sizes, labels from subfolders, the fixed held-out split."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from vaelab.data import load_images
from vaelab.data.folder import split_indices
from vaelab.errors import VaelabError

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

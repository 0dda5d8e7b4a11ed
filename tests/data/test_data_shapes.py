"""The synthetic shapes set as loaded: shapes, determinism, factor indices, and drawn areas against geometry."""

import math

import pytest
import torch

from vaelab.data import load_images
from vaelab.data import shapes as shapes_module
from vaelab.data.shapes import CLASS_NAMES, FACTOR_NAMES, FACTOR_SIZES, render_grid
from vaelab.errors import VaelabError


@pytest.fixture(scope="module")
def test_set():
    return load_images("shapes", "test")


def test_shapes_and_dtypes(test_set):
    assert test_set.images.shape == (2000, 1, 64, 64) and test_set.images.dtype == torch.uint8
    assert test_set.labels.dtype == torch.int64 and test_set.labels.shape == (2000,)
    assert test_set.factors.shape == (2000, 5) and test_set.factors.dtype == torch.float32
    assert test_set.class_names == CLASS_NAMES and test_set.factor_names == FACTOR_NAMES
    assert test_set.factor_sizes == FACTOR_SIZES


def test_factors_are_grid_indices(test_set):
    indices = test_set.factor_indices
    assert torch.equal(indices.float(), test_set.factors)
    assert torch.equal(indices[:, 0], test_set.labels)
    assert set(test_set.labels.tolist()) == {0, 1, 2}
    assert torch.bincount(test_set.labels).min() > 550  # roughly balanced
    for k, size in enumerate(FACTOR_SIZES):
        assert indices[:, k].min() == 0 and indices[:, k].max() == size - 1  # every value is used


def test_images_are_binary_and_inside_the_frame(test_set):
    images = test_set.images[:, 0]
    assert set(images.unique().tolist()) == {0, 255}
    assert (images > 0).sum(dim=(1, 2)).min() > 15  # at least a small blob
    border = torch.cat([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
    assert border.max() == 0


def test_deterministic_and_split_specific(test_set):
    shapes_module.load_shapes.cache_clear()
    again = load_images("shapes", "test")
    assert again is not test_set and torch.equal(again.images, test_set.images)
    assert torch.equal(again.factors, test_set.factors)
    assert load_images("shapes", "test") is again  # cached within the process
    train = load_images("shapes", "train")
    assert len(train) == 20_000 and not torch.equal(train.factors[:2000], test_set.factors)


def test_image_size_sets_the_side():
    small = load_images("shapes", "test", image_size=16)
    assert small.images.shape == (2000, 1, 16, 16)
    assert torch.equal(small.factors, load_images("shapes", "test").factors)  # the factors do not depend on it
    with pytest.raises(VaelabError, match="too small"):
        load_images("shapes", "test", image_size=4)


@pytest.mark.parametrize(
    "label, area",  # in units of the squared circumradius
    [(0, 2.0), (1, math.pi * 0.55)],
)
def test_drawn_area_matches_geometry(label, area):
    size = 128
    # Corners too: the shape must be drawn whole wherever it is.
    places = [(10, 19), (0, 0), (31, 31), (0, 31), (16, 16)]
    indices = torch.tensor([[label, 5, 3 + 7 * k, x, y] for k, (x, y) in enumerate(places)])
    drawn = render_grid(indices, size).double().sum(dim=(1, 2, 3)) / 255  # pixels on
    radius_px = shapes_module._RADIUS * size / 2
    expected = area * radius_px**2
    assert torch.allclose(drawn, torch.full_like(drawn, expected), rtol=0.02)

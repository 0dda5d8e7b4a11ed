"""The synthetic shapes set: shapes, determinism, factor ranges, and drawn areas against geometry."""

import math

import pytest
import torch

from vaelab.data import load_images
from vaelab.data import shapes as shapes_module
from vaelab.data.shapes import CLASS_NAMES, FACTOR_NAMES, render, sample_factors
from vaelab.errors import VaelabError


@pytest.fixture(scope="module")
def test_set():
    return load_images("shapes", "test")


def test_shapes_and_dtypes(test_set):
    assert test_set.images.shape == (2000, 1, 64, 64) and test_set.images.dtype == torch.uint8
    assert test_set.labels.dtype == torch.int64 and test_set.labels.shape == (2000,)
    assert test_set.factors.shape == (2000, 5) and test_set.factors.dtype == torch.float32
    assert test_set.class_names == CLASS_NAMES and test_set.factor_names == FACTOR_NAMES


def test_factors_in_range(test_set):
    shape, scale, rotation, pos_x, pos_y = test_set.factors.unbind(1)
    assert torch.equal(shape.long(), test_set.labels)
    assert set(test_set.labels.tolist()) == {0, 1, 2, 3}
    assert torch.bincount(test_set.labels).min() > 400  # roughly balanced
    assert scale.min() >= 0.5 and scale.max() <= 1.0
    assert rotation.min() >= 0 and rotation.max() <= 2 * math.pi
    for pos in (pos_x, pos_y):
        assert pos.min() >= 0 and pos.max() <= 1


def test_images_are_drawn_inside_the_frame(test_set):
    images = test_set.images[:, 0]
    assert images.amax(dim=(1, 2)).min() == 255  # no blank image
    assert (images > 127).sum(dim=(1, 2)).min() > 15  # at least a small blob
    assert ((images > 0) & (images < 255)).any(dim=(1, 2)).all()  # antialiased edges
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
    with pytest.raises(VaelabError, match="too small"):
        load_images("shapes", "test", image_size=4)


@pytest.mark.parametrize(
    "label, area",  # in units of the squared circumradius
    [(0, 2.0), (1, math.pi * 0.55), (2, 3 * math.sqrt(3) / 4)],
)
def test_drawn_area_matches_geometry(label, area):
    size = 128
    # Corners too: the shape must be drawn whole wherever it is.
    places = [(0.3, 0.6), (0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.5, 0.5)]
    factors = torch.tensor([[label, 1.0, 0.3 + 0.7 * k, x, y] for k, (x, y) in enumerate(places)])
    drawn = render(factors, size).double().sum(dim=(1, 2, 3)) / 255  # coverage in pixels
    radius_px = shapes_module._RADIUS * size / 2
    expected = area * radius_px**2
    assert torch.allclose(drawn, torch.full_like(drawn, expected), rtol=0.01)


def test_sample_factors_fixed_seed():
    assert torch.equal(sample_factors(10, 3), sample_factors(10, 3))
    assert not torch.equal(sample_factors(10, 3), sample_factors(10, 4))

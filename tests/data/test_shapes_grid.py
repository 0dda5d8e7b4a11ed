"""The shapes grid: factor sizes, index round trips, binary deterministic rendering, factors that move what they
should, fixed-factor samples, seeded splits, variants and their catalog entries, discrete factors on ImageSet."""

import math

import numpy as np
import pytest
import torch

from vaelab.data import ImageSet, dataset_names, load_images
from vaelab.data import shapes as S
from vaelab.data.catalog import channels, image_shape
from vaelab.errors import VaelabError


def test_grid_sizes():
    assert S.FACTOR_NAMES == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert S.FACTOR_SIZES == (3, 6, 40, 32, 32) and S.GRID_SIZE == math.prod(S.FACTOR_SIZES) == 737_280
    assert S.CLASS_NAMES == ("square", "ellipse", "heart")
    assert [len(S.factor_values(k)) for k in range(5)] == list(S.FACTOR_SIZES)
    assert np.allclose(S.factor_values(1), [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    orientation = S.factor_values(2)
    assert orientation[0] == 0 and orientation[-1] < 2 * math.pi and np.allclose(np.diff(orientation), math.pi / 20)
    assert S.factor_values(3)[0] == 0 and S.factor_values(4)[-1] == 1


def test_index_round_trip():
    rng = np.random.default_rng(0)
    flat = torch.from_numpy(np.concatenate([rng.integers(0, S.GRID_SIZE, 1000), [0, S.GRID_SIZE - 1]]))
    factors = S.index_to_factors(flat)
    assert factors.dtype == torch.int64 and factors.shape == (1002, 5)
    assert torch.equal(S.factors_to_index(factors), flat)
    assert factors[-2].tolist() == [0, 0, 0, 0, 0] and factors[-1].tolist() == [2, 5, 39, 31, 31]
    corners = torch.tensor(np.stack(np.meshgrid(*[[0, s - 1] for s in S.FACTOR_SIZES], indexing="ij"), -1))
    corners = corners.reshape(-1, 5)
    assert torch.equal(S.index_to_factors(S.factors_to_index(corners)), corners)
    assert S.factors_to_index(torch.tensor([[0, 0, 0, 0, 1]])).item() == 1  # the last factor varies fastest
    with pytest.raises(ValueError):
        S.index_to_factors(torch.tensor([S.GRID_SIZE]))
    with pytest.raises(ValueError):
        S.factors_to_index(torch.tensor([[3, 0, 0, 0, 0]]))


def test_rendering_is_binary_and_deterministic():
    indices = S.sample_factor_indices(200, 1)
    images = S.render_grid(indices, 32)
    assert images.shape == (200, 1, 32, 32) and images.dtype == torch.uint8
    assert set(images.unique().tolist()) == {0, 255}
    assert torch.equal(images, S.render_grid(indices.numpy(), 32))
    assert torch.equal(images[:7], S.render_grid(indices[:7], 32))  # an image does not depend on its batch


def _row(shape=0, scale=5, orientation=0, pos_x=16, pos_y=16):
    return [shape, scale, orientation, pos_x, pos_y]


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_pos_x_moves_the_centre_of_mass_in_x_only(shape):
    images = S.render_grid(torch.tensor([_row(shape, orientation=5, pos_x=x) for x in range(32)]), 64)
    mass = images[:, 0].double()
    total = mass.sum(dim=(1, 2))
    cx = (mass.sum(1) * torch.arange(64)).sum(1) / total
    cy = (mass.sum(2) * torch.arange(64)).sum(1) / total
    assert (cx.diff() > 0).all()
    assert cy.max() - cy.min() < 0.3  # sampling the same shape at another sub-pixel offset


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_scale_grows_the_area(shape):
    images = S.render_grid(torch.tensor([_row(shape, scale=s, orientation=7) for s in range(6)]), 64)
    area = (images > 0).sum(dim=(1, 2, 3))
    assert (area.diff() > 0).all()
    assert 3.5 < area[-1] / area[0] < 4.5  # scale 0.5 -> 1: four times the area


def test_fixed_factor_sample_keeps_that_factor():
    fixed = S.sample_factor_indices(500, np.random.default_rng(3), fixed={2: 17, "shape": 1})
    assert fixed.shape == (500, 5) and fixed.dtype == torch.int64
    assert (fixed[:, 2] == 17).all() and (fixed[:, 0] == 1).all()
    for k in (1, 3, 4):
        assert fixed[:, k].min() >= 0 and fixed[:, k].max() == S.FACTOR_SIZES[k] - 1 and fixed[:, k].min() == 0
    assert torch.equal(S.sample_factor_indices(10, 5), S.sample_factor_indices(10, 5))
    with pytest.raises(ValueError):
        S.sample_factor_indices(3, 0, fixed={1: 6})


def test_splits_are_seeded_distinct_and_disjoint():
    train, test = S.split_indices("train"), S.split_indices("test")
    assert torch.equal(train, S.split_indices("train")) and torch.equal(test, S.split_indices("test"))
    assert len(train) == 20_000 and len(test) == 2_000
    assert len(set(train.tolist()) | set(test.tolist())) == 22_000  # no repeats, no overlap


def test_variants_channels_and_catalog():
    assert {"shapes", "shapes:colour", "shapes:noise"} <= set(dataset_names())
    for name, c in (("shapes", 1), ("shapes:colour", 3), ("shapes:noise", 1)):
        assert image_shape(name) == (c, 64, 64) and channels(name) == c
        data = load_images(name, "test", image_size=16)
        assert data.images.shape == (2000, c, 16, 16) and data.factor_sizes == S.FACTOR_SIZES
        assert torch.equal(data.factors, load_images("shapes", "test", image_size=16).factors)
    colour = load_images("shapes:colour", "test", image_size=16).images
    assert set(colour.unique().tolist()) == {0, 255} and len(torch.unique(colour.amax((2, 3)), dim=0)) == 6
    noise = load_images("shapes:noise", "test", image_size=16).images
    assert noise.max() == 255 and 0 < noise[noise < 255].float().mean() < 128
    assert image_shape("shapes:colour", 16, grayscale=True) == (1, 16, 16)
    assert load_images("shapes:colour", "test", image_size=16, grayscale=True).images.shape == (2000, 1, 16, 16)
    with pytest.raises(VaelabError, match="unknown dataset 'shapes:stripes'"):
        load_images("shapes:stripes", "test")
    with pytest.raises(ValueError, match="unknown shapes variant"):
        S.render_grid(torch.zeros(1, 5, dtype=torch.int64), 16, "stripes")


def test_imageset_keeps_discrete_factors():
    data = load_images("shapes", "test", image_size=16)
    part = data.subset(torch.tensor([5, 1]))
    assert part.factor_sizes == S.FACTOR_SIZES and torch.equal(part.factor_indices, data.factor_indices[[5, 1]])
    images = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    fields = dict(images=images, labels=None, class_names=None, factor_names=("u", "v"), factor_sizes=(2, 3))
    ImageSet(factors=torch.tensor([[0.0, 2.0], [1.0, 0.0]]), **fields)
    for bad in ([[0.5, 0.0], [1.0, 0.0]], [[2.0, 0.0], [1.0, 0.0]], [[0.0, -1.0], [1.0, 0.0]]):
        with pytest.raises(ValueError, match="whole numbers"):
            ImageSet(factors=torch.tensor(bad), **fields)
    with pytest.raises(ValueError, match="one size per column"):
        ImageSet(factors=torch.zeros(2, 2), **{**fields, "factor_sizes": (2,)})
    with pytest.raises(ValueError, match="not discrete"):
        _ = ImageSet(images, None, None, torch.zeros(2, 2), ("u", "v")).factor_indices

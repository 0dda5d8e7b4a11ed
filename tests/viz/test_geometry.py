"""The latent-space arithmetic behind the pictures, against references."""

from __future__ import annotations

import math

import torch

from vaelab.viz.decoded import manifold_values
from vaelab.viz.geometry import lerp, linear_grid, pca_2d, quantile_grid, rank_dims, slerp


def test_quantile_grid_is_the_normal_inverse_cdf():
    n = 15
    expected = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    assert torch.allclose(quantile_grid(n), expected, atol=1e-6)
    assert torch.allclose(manifold_values(n, None), expected, atol=1e-6)
    grid = quantile_grid(n)
    assert torch.allclose(grid, -grid.flip(0), atol=1e-6)  # symmetric about 0
    assert abs(float(grid[-1]) - 1.6448536) < 1e-5  # the 95% quantile


def test_linear_grid_spans_minus_r_to_r():
    grid = manifold_values(9, 2.0)
    assert torch.equal(grid, linear_grid(9, 2.0))
    assert grid[0] == -2.0 and grid[-1] == 2.0 and grid[4] == 0.0


def test_lerp_endpoints_and_midpoint():
    a, b = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([-1.0, 4.0, 0.5])
    path = lerp(a, b, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(path[0], a) and torch.allclose(path[2], b)
    assert torch.allclose(path[1], (a + b) / 2)


def test_slerp_endpoints_equal_the_inputs():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    path = slerp(a, b, torch.linspace(0, 1, 7))
    assert path.shape == (7, 16)
    assert torch.allclose(path[0], a, atol=1e-6) and torch.allclose(path[-1], b, atol=1e-6)


def test_slerp_follows_the_circle():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path.norm(dim=1), torch.ones(5), atol=1e-6)  # linear would dip to 0.707
    assert torch.allclose(path[2], torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]), atol=1e-6)


def test_slerp_of_parallel_or_zero_vectors_is_linear():
    t = torch.linspace(0, 1, 4)
    a = torch.tensor([1.0, 2.0])
    assert torch.allclose(slerp(a, 3 * a, t), lerp(a, 3 * a, t))
    assert torch.allclose(slerp(torch.zeros(2), a, t), lerp(torch.zeros(2), a, t))


def test_pca_finds_the_main_axes():
    g = torch.Generator().manual_seed(0)
    # variance 9 along (1, 1, 0)/sqrt 2, variance 1 along z, nearly nothing along (1, -1, 0)
    n = 4000
    u = torch.randn(n, generator=g) * 3
    w = torch.randn(n, generator=g)
    e = torch.randn(n, generator=g) * 0.01
    x = torch.stack([u / math.sqrt(2) + e, u / math.sqrt(2) - e, w], 1) + 5.0
    proj, ratio = pca_2d(x)
    assert proj.shape == (n, 2)
    assert torch.allclose(proj.mean(0), torch.zeros(2), atol=1e-4)
    assert abs(float(ratio[0]) - 0.9) < 0.02 and abs(float(ratio[1]) - 0.1) < 0.02
    assert float(ratio.sum()) <= 1.0 + 1e-6
    assert torch.allclose(proj[:, 0].abs(), (u - u.mean()).abs(), atol=0.05)


def test_rank_dims_orders_by_kl():
    assert rank_dims(torch.tensor([0.1, 2.0, 0.0, 1.5])) == [1, 3, 0, 2]

"""The PixelCNN reference is autoregressive (each pixel's distribution depends only on the pixels before it, so
its per-pixel masses multiply to a distribution over images) and its benchmark runs end to end."""

import math

import pytest
import torch

from benchmarks import pixelcnn


@pytest.mark.parametrize("channels", [1, 3])
def test_each_pixel_depends_only_on_the_pixels_before_it(channels):
    torch.manual_seed(0)
    net = pixelcnn.pixelcnn(channels, 8, 2).eval()
    x = torch.rand(1, channels, 9, 9)
    for row, col in [(0, 0), (4, 4), (4, 8), (8, 0)]:
        changed = x.clone()
        changed[..., row, col] = 1 - changed[..., row, col]
        with torch.no_grad():
            moved = (net(changed) != net(x)).any(1)[0]  # (H, W): pixels whose parameters changed
        position = torch.arange(81).view(9, 9)
        here = row * 9 + col
        assert not moved[position <= here].any()  # itself and every pixel before it: untouched
        if here < 80:
            assert moved[position > here].any()  # some pixel after it sees the change


def test_the_benchmark_trains_and_prints_the_test_bits_per_dim(cifar_root, capsys):
    assert pixelcnn.main(["--dataset", "cifar10", "--data-dir", str(cifar_root), "--steps", "1", "--limit", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("PixelCNN (64 channels, 4 blocks,")
    assert "1 steps of 40" in lines[-2]  # the fixture's 40 training images: fewer than a batch of 64
    head, figures = lines[-1].split(": ")
    assert head == "test bits/dim, first 10 test images"
    mean, sem = (float(v) for v in figures.split(" ± "))
    assert 0 < mean < 16 and math.isfinite(sem) and sem > 0  # untrained: near 8 bits for uniform noise images

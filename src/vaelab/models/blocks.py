"""Residual building blocks of the strong networks (`nets/resnet.py`, `nets/hvae.py`), in the style of VDVAE.

Width, depth and resolutions are knobs of `ModelConfig` (`width`, `depth`,
`resolutions`), so one preset scales from a laptop CPU to a GPU by config.
The stabilisers each come from a paper, named where they are coded: residual
branches whose last layer is scaled at initialisation by 1/sqrt(number of
blocks) (VDVAE, Child 2021), GELU non-linearities and a 1x1-3x3-3x3-1x1
bottleneck (VDVAE).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VaelabError

DEFAULT_RESOLUTION_STEPS = 2  # resolutions when the config names none: the image's 1/2 and 1/4


class Block(nn.Module):
    """VDVAE's block: GELU-1x1-GELU-3x3-GELU-3x3-GELU-1x1 through a bottleneck of width/4, plus `x` when
    `residual` (in == out). `scale` multiplies the last layer's initial weights: 1/sqrt(blocks) keeps the sum
    of many residual branches at the scale of one at initialisation (VDVAE, Child 2021, section 3.2)."""

    def __init__(self, c_in: int, c_out: int, *, residual: bool = True, scale: float = 1.0) -> None:
        super().__init__()
        mid = max(1, c_in // 4)
        self.residual = residual and c_in == c_out
        self.c1 = nn.Conv2d(c_in, mid, 1)
        self.c2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.c3 = nn.Conv2d(mid, mid, 3, padding=1)
        self.c4 = nn.Conv2d(mid, c_out, 1)
        with torch.no_grad():  # biases start at zero, as VDVAE's do: a branch of scale 0 starts as exactly 0
            self.c4.weight.mul_(scale)
            for conv in (self.c1, self.c2, self.c3, self.c4):
                conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c4(F.gelu(self.c3(F.gelu(self.c2(F.gelu(self.c1(F.gelu(x))))))))
        return x + h if self.residual else h


def blocks(width: int, depth: int, scale: float) -> nn.Sequential:
    """`depth` residual blocks of `width` channels."""
    return nn.Sequential(*(Block(width, width, scale=scale) for _ in range(depth)))


def branch_scale(n_blocks: int) -> float:
    """1/sqrt(n): the initial scale of each of n residual branches' last layer (VDVAE)."""
    return 1.0 / math.sqrt(max(1, n_blocks))


def resample(x: torch.Tensor, size: int) -> torch.Tensor:
    """A square feature map to `size` pixels a side: average pooling down, nearest-neighbour copies up (both by
    whole factors: `check_resolutions` makes sure)."""
    current = x.shape[-1]
    if size < current:
        return F.avg_pool2d(x, current // size)
    if size > current:
        return F.interpolate(x, scale_factor=size // current, mode="nearest")
    return x


def check_resolutions(net: str, image_shape: tuple[int, int, int], resolutions: tuple[int, ...]) -> tuple[int, ...]:
    """The feature-map sizes the blocks run at, highest first; default: the image's 1/2 and 1/4 (while whole).

    Refused in one line: non-square images, sizes that do not fall strictly from one to the next, and a size
    that is not a whole fraction of the one above it (the blocks pool and copy by whole factors only).
    """
    _, h, w = image_shape
    if h != w:
        raise VaelabError(f"the {net} networks need square images, got {h}x{w}: use --image-size")
    if not resolutions:
        resolutions = tuple(h >> s for s in range(1, DEFAULT_RESOLUTION_STEPS + 1) if h % (1 << s) == 0) or (h,)
    if not 1 <= resolutions[0] <= h or h % resolutions[0]:
        raise VaelabError(_size_mismatch(net, h, resolutions))
    above = None
    for r in resolutions:
        top = h if above is None else above - 1  # the first may keep the image's size; the others must fall
        if not 1 <= r <= top or (above or h) % r:
            raise VaelabError(
                f"the {net} networks cannot reach a {r}x{r} feature map from {above or h}x{above or h}: "
                f"model.resolutions must fall strictly from the image's size ({h}) by whole factors "
                f"(such as {', '.join(map(str, _halvings(h)))}), got {list(resolutions)}"
            )
        above = r
    return tuple(resolutions)


class Output(nn.Module):
    """The likelihood's parameters at the image's size from the last feature map: GELU, a 1x1 convolution to
    f*f times the channels, and a pixel shuffle that lays each f x f patch out (f = image size / map size).

    Every pixel gets parameters of its own at the cost of one 1x1 layer at the image's size (VDVAE's output
    layer is a 1x1 convolution at the image's size too); a 3x3 layer after copying the map up cost 9 times as
    much (60% of an hvae's step on CIFAR-10 with the 100 channels of a logistic mixture).
    """

    def __init__(self, width: int, out_channels: int, map_size: int, image_size: int) -> None:
        super().__init__()
        self.factor = image_size // map_size
        self.conv = nn.Conv2d(width, out_channels * self.factor**2, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.conv(F.gelu(h))
        return F.pixel_shuffle(out, self.factor) if self.factor > 1 else out


def _size_mismatch(net: str, h: int, resolutions: tuple[int, ...]) -> str:
    """The refusal for feature maps laid out for images of another size (a 28-pixel preset on 32-pixel images):
    the two flags that fix it, with values that fit."""
    first = resolutions[0]
    sizes = [first << k for k in range(max(1, h // first).bit_length() + 1)]  # first, 2 first, 4 first, ...
    fits = min(sizes, key=lambda s: (abs(s - h), s))  # the image size the maps were most likely laid out for
    # the same layout for h: each map the same fraction of the image (1x1 stays 1x1), else h's halvings
    scaled = [1 if r == 1 else h * r // fits for r in resolutions]
    if any(r != 1 and (h * r) % fits for r in resolutions) or 0 in scaled:
        halvings = [r for r in _halvings(h) if r > 1][: len(resolutions)]
        scaled = halvings + ([1] if resolutions[-1] == 1 else [])
    scaled = sorted(set(scaled), reverse=True)
    return (
        f"the {net} networks' feature maps (model.resolutions {list(resolutions)}) were laid out for images of "
        f"another size than these {h}x{h} ones: resize the images with --image-size {fits} (folder: and shapes "
        f"datasets), or lay the maps out for {h} px with --resolutions {','.join(map(str, scaled))}"
    )


def _halvings(h: int) -> list[int]:
    out = [h]
    while out[-1] % 2 == 0 and out[-1] > 2:
        out.append(out[-1] // 2)
    return out[1:] or [h]


class BottomUp(nn.Module):
    """The bottom-up encoder: a 3x3 stem at the image's size, then at each resolution (highest first) a
    pooling to it and `depth` residual blocks. Returns the activations after each resolution's blocks."""

    def __init__(self, image_shape: tuple[int, int, int], width: int, depth: int, resolutions: tuple[int, ...]):
        super().__init__()
        self.resolutions = resolutions
        self.stem = nn.Conv2d(image_shape[0], width, 3, padding=1)
        scale = branch_scale(depth * len(resolutions))
        self.stages = nn.ModuleList(blocks(width, depth, scale) for _ in resolutions)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.stem(x)
        acts = []
        for r, stage in zip(self.resolutions, self.stages):
            h = stage(resample(h, r))
            acts.append(h)
        return acts

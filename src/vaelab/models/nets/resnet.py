"""A single-latent residual VAE: the `BottomUp` blocks to a vector latent and back, for `mnist-resnet`.

Encoder: the bottom-up residual stages (`models/blocks.py`), then a linear
layer from the lowest resolution's map to the posterior's parameters.
Decoder: a linear layer to the lowest resolution's map, the same stages
top-down (nearest-neighbour copies up), and `blocks.Output` to the
likelihood's channels at the image's size. Width, depth and resolutions come
from `ModelConfig`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...config import ModelConfig
from ..blocks import BottomUp, Output, blocks, branch_scale, check_resolutions, resample
from ..registry import DECODERS, ENCODERS


class ResNetEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], out_features: int, model: ModelConfig) -> None:
        super().__init__()
        resolutions = check_resolutions("resnet", image_shape, model.resolutions)
        self.bottom_up = BottomUp(image_shape, model.width, model.depth, resolutions)
        self.head = nn.Linear(model.width * resolutions[-1] ** 2, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.gelu(self.bottom_up(x)[-1]).flatten(1))


class ResNetDecoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, out_channels: int, model: ModelConfig):
        super().__init__()
        self.resolutions = check_resolutions("resnet", image_shape, model.resolutions)[::-1]  # lowest first
        self.width = model.width
        self.project = nn.Linear(latent_dim, model.width * self.resolutions[0] ** 2)
        scale = branch_scale(model.depth * len(self.resolutions))
        self.stages = nn.ModuleList(blocks(model.width, model.depth, scale) for _ in self.resolutions)
        self.out = Output(model.width, out_channels, self.resolutions[-1], image_shape[-1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        r0 = self.resolutions[0]
        h = self.project(z).reshape(len(z), self.width, r0, r0)
        for r, stage in zip(self.resolutions, self.stages):
            h = stage(resample(h, r))
        return self.out(h)


@ENCODERS.register("resnet")
def encoder(image_shape: tuple[int, int, int], out_features: int, *, model: ModelConfig) -> nn.Module:
    return ResNetEncoder(image_shape, out_features, model)


@DECODERS.register("resnet")
def decoder(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int, *, model: ModelConfig) -> nn.Module:
    return ResNetDecoder(image_shape, latent_dim, out_channels, model)

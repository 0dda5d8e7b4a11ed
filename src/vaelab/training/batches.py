"""Mini-batches from uint8 images held in memory: index-based, converted on the fly.

No per-sample Python and no DataLoader workers: an epoch is one random
permutation, a batch is one gather, then one conversion to float in [0, 1].
The permutation of epoch e and the dynamic binarisation of its batch i depend
only on (seed, e, i), so a run's data can be reproduced without saving any
sampler state. In data-parallel training every rank visits the same global
batches and keeps its own rows of each (`shard`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import VaelabError
from .distributed import SINGLE, Dist


def binarize_static(images: torch.Tensor) -> torch.Tensor:
    """Threshold once at 0.5 (pixel >= 128 is on), kept as uint8 0/255: (N, C, H, W)."""
    return (images >= 128).to(torch.uint8) * 255


class Batches:
    """An iterable over float batches (B, C, H, W) in [0, 1] on `device`."""

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        drop_last: bool = False,
        dynamic_binarize: bool = False,
        seed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
        shard: Dist = SINGLE,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("Batches takes uint8 images of shape (N, C, H, W)")
        if drop_last and len(images) < batch_size:
            raise VaelabError(
                f"batch size {batch_size} is larger than the {len(images)} images and the "
                f"partial last batch is dropped: nothing to train on"
            )
        self.images = images.to(device)  # (N, C, H, W) uint8, on the device once
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.dynamic_binarize = dynamic_binarize
        self.seed = seed
        self.memory_format = memory_format  # channels-last for a channels-last model
        self.shard = shard
        self._noise = torch.Generator(self.images.device) if dynamic_binarize else None

    def __len__(self) -> int:
        n, b = len(self.images), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def num_images(self) -> int:
        return len(self) * self.batch_size if self.drop_last else len(self.images)

    def size(self, i: int) -> int:
        """The number of images in batch i (all ranks together)."""
        return min(self.batch_size, len(self.images) - i * self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The image indices of an epoch, in the order they are visited."""
        n = len(self.images)
        if not self.shuffle:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=g)

    def epoch(self, epoch: int = 0, skip: int = 0) -> Iterator[torch.Tensor]:
        """The batches of an epoch (this rank's rows of each); `skip` leaves out the first (to resume mid-epoch)."""
        order = self.order(epoch).to(self.images.device)
        for i in range(skip, len(self)):
            rows = self.shard.rows(self.size(i))
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[index[rows]].float().div_(255.0)
            if self.dynamic_binarize:  # a fresh binarisation every epoch, drawn for the whole batch
                self._noise.manual_seed(((self.seed * 1_000_003 + epoch) * 1_000_003 + i) & (2**64 - 1))
                u = torch.rand((len(index), *self.images.shape[1:]), generator=self._noise, device=x.device)
                x = (u[rows] < x).float()
            yield x.contiguous(memory_format=self.memory_format)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.epoch(0)

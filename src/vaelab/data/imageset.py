"""`ImageSet`: a whole split of a dataset held in memory as one uint8 tensor."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageSet:
    """Images of one split, with optional labels and generative factors.

    Every loader returns one of these; the tensors are checked on construction
    so that a loader bug shows up here and not as a shape error in training.
    Tensors may be shared with an in-process cache (shapes): do not modify
    them in place.
    """

    images: torch.Tensor  # (N, C, H, W) uint8, contiguous, 0..255
    labels: torch.Tensor | None  # (N,) int64, or None when the set has no labels
    class_names: tuple[str, ...] | None  # name of each label value, when known
    factors: torch.Tensor | None = None  # (N, F) float32 generative factors
    factor_names: tuple[str, ...] | None = None  # (F,) names of the factor columns
    # (F,) when the factors lie on a discrete grid: factors then hold each factor's index 0..size-1 as a whole
    # number (shapes); None when they are continuous values
    factor_sizes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        images = self.images
        if images.dtype != torch.uint8 or images.dim() != 4 or not images.is_contiguous():
            raise ValueError(
                f"images must be a contiguous (N, C, H, W) uint8 tensor, got {images.dtype} {tuple(images.shape)}"
            )
        n = images.shape[0]
        if self.labels is not None:
            if self.labels.dtype != torch.int64 or tuple(self.labels.shape) != (n,):
                raise ValueError(
                    f"labels must be a ({n},) int64 tensor, got {self.labels.dtype} {tuple(self.labels.shape)}"
                )
        if (self.factors is None) != (self.factor_names is None):
            raise ValueError("factors and factor_names go together")
        if self.factors is not None:
            shape = tuple(self.factors.shape)
            if self.factors.dtype != torch.float32 or len(shape) != 2 or shape[0] != n:
                raise ValueError(f"factors must be an ({n}, F) float32 tensor, got {self.factors.dtype} {shape}")
            if len(self.factor_names) != shape[1]:
                raise ValueError(f"{shape[1]} factor columns but {len(self.factor_names)} names")
        if self.factor_sizes is not None:
            if self.factors is None or len(self.factor_sizes) != self.factors.shape[1]:
                raise ValueError("factor_sizes needs factors, one size per column")
            sizes = torch.tensor(self.factor_sizes, dtype=torch.float32)
            f = self.factors
            if ((f != f.round()) | (f < 0) | (f >= sizes)).any():
                raise ValueError(f"discrete factors must be whole numbers in 0..size-1, sizes {self.factor_sizes}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return (c, h, w)

    @property
    def factor_indices(self) -> torch.Tensor:
        """(N, F) int64 index of each discrete factor; a ValueError when the factors are not on a grid."""
        if self.factor_sizes is None:
            raise ValueError("these factors are not discrete (factor_sizes is None)")
        return self.factors.long()

    def subset(self, indices: torch.Tensor) -> ImageSet:
        """The images at `indices` (a 1-D index tensor or boolean mask), labels and factors (and sizes) kept."""

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[indices].contiguous()

        return ImageSet(
            images=pick(self.images),
            labels=pick(self.labels),
            class_names=self.class_names,
            factors=pick(self.factors),
            factor_names=self.factor_names,
            factor_sizes=self.factor_sizes,
        )

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

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return (c, h, w)

    def subset(self, indices: torch.Tensor) -> ImageSet:
        """The images at `indices` (a 1-D index tensor or boolean mask), labels and factors kept."""

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[indices].contiguous()

        return ImageSet(
            images=pick(self.images),
            labels=pick(self.labels),
            class_names=self.class_names,
            factors=pick(self.factors),
            factor_names=self.factor_names,
        )

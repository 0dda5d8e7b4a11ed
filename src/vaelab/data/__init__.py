"""Datasets as in-memory uint8 image tensors.

`load_images(name, split)` returns an `ImageSet` (images (N, C, H, W) uint8,
labels, class names, and generative factors for `shapes`). Files live in
`ROOT/<name>/` under their original names, ROOT from `resolve_data_root`;
missing files are downloaded from the official mirrors (see `download`).
"""

from .catalog import DatasetStatus, dataset_names, dataset_status, load_images
from .imageset import ImageSet
from .root import resolve_data_root

__all__ = ["DatasetStatus", "ImageSet", "dataset_names", "dataset_status", "load_images", "resolve_data_root"]

"""From a DataConfig to the image sets a run trains and validates on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..config import DataConfig
from ..data import ImageSet, load_images
from ..errors import VaelabError
from .batches import binarize_static

DEFAULT_VAL_SIZE = 5000  # validation images carved from train when data.val_size is not set (at most a tenth)


@dataclass(frozen=True)
class Splits:
    train: ImageSet
    val: ImageSet
    val_name: str  # "val" (carved from train) or "test" (when data.val_size is 0)


def load_split(cfg: DataConfig, split: str, data_dir=None) -> ImageSet:
    """One split of the dataset as uint8 images, statically binarised when the config says so."""
    images = load_images(
        cfg.name,
        split,
        data_dir=data_dir,
        image_size=cfg.image_size,
        grayscale=cfg.grayscale,
        skip_bad_files=cfg.skip_bad_files,
    )
    if cfg.binarize == "static":
        images = dataclasses.replace(images, images=binarize_static(images.images))  # labels and factors kept
    return images


def select_classes(images: ImageSet, classes, dataset: str) -> ImageSet:
    """The images whose label is one of `classes` (a one-line error when that cannot be done)."""
    if images.labels is None:
        raise VaelabError(f"{dataset} has no labels, so it cannot be filtered by class (data.classes)")
    known = len(images.class_names) if images.class_names else int(images.labels.max()) + 1
    unknown = sorted(c for c in set(classes) if not 0 <= c < known)
    if unknown:
        raise VaelabError(f"{dataset} has labels 0..{known - 1}; no class {', '.join(map(str, unknown))}")
    kept = images.subset(torch.isin(images.labels, torch.tensor(sorted(set(classes)))))
    if len(kept) == 0:
        raise VaelabError(f"{dataset} has no images of class {', '.join(map(str, classes))} in this split")
    return kept


def prepare_splits(cfg: DataConfig, data_dir=None) -> Splits:
    """Train and validation sets: validation is a seeded random carve-out of train (or the test set).

    The carve-out is data.val_size images, or when that is not set 5000 or a
    tenth of the training images, whichever is fewer (a folder of 2,000
    photos validates on 200); 0 validates on the test split.

    With data.classes, both keep only those labels; the carve-out is made first,
    so the validation images are the same ones an unfiltered run holds out.
    """
    full = load_split(cfg, "train", data_dir)
    val_size = cfg.val_size if cfg.val_size is not None else min(DEFAULT_VAL_SIZE, len(full) // 10)
    if val_size == 0:
        train, val, val_name = full, load_split(cfg, "test", data_dir), "test"
    else:
        if val_size >= len(full):
            raise VaelabError(
                f"data.val_size {val_size} leaves no training images ({cfg.name} has {len(full)}); lower --val-size"
            )
        perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(cfg.split_seed))
        val = full.subset(perm[:val_size].sort().values)
        train = full.subset(perm[val_size:].sort().values)
        val_name = "val"
    if cfg.classes is not None:
        train, val = select_classes(train, cfg.classes, cfg.name), select_classes(val, cfg.classes, cfg.name)
    if cfg.limit is not None:
        train = train.subset(torch.arange(min(cfg.limit, len(train))))
    return Splits(train, val, val_name)

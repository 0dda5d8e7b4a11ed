"""The dataset catalog: one registry of dataset specs, and the public load/status functions."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import VaelabError
from ..registry import Registry
from . import cifar, folder, shapes
from .download import ensure_file
from .idx import read_idx_pair
from .imageset import ImageSet
from .root import resolve_data_root

SPLITS = ("train", "test")


@dataclass(frozen=True)
class LoadRequest:
    """What `load_images` asks of a spec's loader, already checked."""

    root: Path  # data root; a set's files are in root / <name>
    split: str  # "train" | "test"
    arg: str | None  # the PATH of "folder:PATH", else None
    image_size: int | None  # None: the set's default
    grayscale: bool
    download: bool
    skip_bad_files: bool  # folder: leave out unreadable files instead of failing


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of the catalog."""

    name: str  # as the user types it; "folder:PATH" for the folder set; "shapes:colour" for a variant
    description: str  # one line
    load: Callable[[LoadRequest], ImageSet]
    missing: Callable[[Path], list[str]] | None  # absent files under ROOT/<name>/; None: nothing on disk
    image_shape: tuple[int, int, int]  # (C, H, W): fixed, or the default when resizable
    resizable: bool  # whether image_size applies
    num_train: int | None  # None when it depends on the user's files
    num_test: int | None


@dataclass(frozen=True)
class DatasetStatus:
    """One row of `vaelab datasets`."""

    name: str
    description: str
    present: bool  # all files there (or extractable), or generated in code / supplied by the user
    path: Path | None  # ROOT/<name>/, or None when the set needs no files
    missing: tuple[str, ...]  # file names relative to path
    image_shape: tuple[int, int, int]  # (C, H, W); the default one for resizable sets
    num_train: int | None
    num_test: int | None


DATASETS: Registry[DatasetSpec] = Registry("dataset")

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _idx_spec(name: str, description: str, class_names: tuple[str, ...]) -> DatasetSpec:
    def load(req: LoadRequest) -> ImageSet:
        directory = req.root / name
        images_file, labels_file = IDX_FILES[req.split]
        images, labels = read_idx_pair(
            ensure_file(name, images_file, directory, download=req.download),
            ensure_file(name, labels_file, directory, download=req.download),
            num_classes=len(class_names),
            image_size=(28, 28),
        )
        return ImageSet(images=images, labels=labels, class_names=class_names)  # (N, 1, 28, 28)

    def missing(directory: Path) -> list[str]:
        return [f for pair in IDX_FILES.values() for f in pair if not (directory / f).is_file()]

    return DatasetSpec(name, description, load, missing, (1, 28, 28), False, 60_000, 10_000)


def _shapes_spec(name: str, variant: str, description: str) -> DatasetSpec:
    def load(req: LoadRequest) -> ImageSet:
        grey = req.grayscale and shapes.VARIANTS[variant] == 3  # the grey variants already are
        return shapes.load_shapes(req.split, req.image_size or shapes.DEFAULT_SIZE, variant, grey)

    size = shapes.DEFAULT_SIZE
    shape = (shapes.VARIANTS[variant], size, size)
    return DatasetSpec(name, description, load, None, shape, True, shapes.SIZES["train"], shapes.SIZES["test"])


for _spec in (
    _idx_spec("mnist", "handwritten digits 0-9 (LeCun et al. 1998)", tuple(str(d) for d in range(10))),
    _idx_spec(
        "fashion-mnist",
        "Zalando clothing photos in 10 classes (Xiao et al. 2017)",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    DatasetSpec(
        "cifar10",
        "32x32 colour photos in 10 classes (Krizhevsky 2009)",
        lambda req: cifar.load_cifar10(req.root / cifar.NAME, req.split, download=req.download),
        cifar.missing_files,
        cifar.IMAGE_SHAPE,
        False,
        50_000,
        10_000,
    ),
    _shapes_spec(
        "shapes", "plain", "dSprites-like white shapes on black, 5 factors on a grid (image_size sets the side)"
    ),
    _shapes_spec("shapes:colour", "colour", "shapes, each in one of 6 colours (a nuisance, not a factor)"),
    _shapes_spec("shapes:noise", "noise", "shapes on a background of grey noise (a nuisance, not a factor)"),
    DatasetSpec(
        "folder:PATH",
        "your PNG/JPEG images under PATH, resized to image_size (subfolders = classes, 10% held out as test)",
        lambda req: folder.load_folder(
            req.arg,
            req.split,
            image_size=req.image_size or folder.DEFAULT_SIZE,
            grayscale=req.grayscale,
            skip_bad_files=req.skip_bad_files,
        ),
        None,
        (3, folder.DEFAULT_SIZE, folder.DEFAULT_SIZE),
        True,
        None,
        None,
    ),
):
    DATASETS.register(_spec.name, _spec)


def _lookup(name: str) -> tuple[DatasetSpec, str | None]:
    """The spec for a user-typed name, and the argument after ':' (folder:PATH)."""
    if name in DATASETS and not name.endswith(":PATH"):  # a plain name, or a variant such as shapes:colour
        return DATASETS[name], None
    key, sep, arg = name.partition(":")
    if not sep:
        if f"{key}:PATH" in DATASETS:
            raise VaelabError(f"dataset {key!r} needs a path: {key}:PATH")
        return DATASETS[key], None
    if f"{key}:PATH" not in DATASETS:
        raise VaelabError(f"unknown dataset {name!r} (known: {', '.join(dataset_names())})")
    if not arg:
        raise VaelabError(f"dataset {name!r} needs a path after ':', e.g. {key}:~/pictures")
    return DATASETS[f"{key}:PATH"], arg


def load_images(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    grayscale: bool = False,
    download: bool = True,
    skip_bad_files: bool = False,
) -> ImageSet:
    """Load one split of a dataset as uint8 images (N, C, H, W).

    name: "mnist" | "fashion-mnist" | "cifar10" | "shapes" | "shapes:colour" | "shapes:noise" | "folder:PATH".
    split: "train" | "test" (a folder holds out a fixed 10% as "test").
    data_dir: data root (see `resolve_data_root`); files live in ROOT/<name>/.
    image_size: side of the square images for folder (default 64) and shapes
        (default 64); the fixed-size sets accept only their native size.
    grayscale: one grey channel for folder and shapes:colour; accepted for the grey sets; an error for cifar10.
    download: fetch missing files from the official mirrors.
    skip_bad_files: folder only: leave out files that cannot be read as images
        (their count and names are logged once as a warning) instead of failing;
        still an error when no readable image is left. The other sets are
        checksummed files that are read whole or not at all.
    Raises VaelabError for anything the user can fix (unknown name or split,
    missing or corrupt files, no network).
    """
    if split not in SPLITS:
        raise VaelabError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    spec, arg = _lookup(name)
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise VaelabError(f"image size must be a positive integer, got {image_size!r}")
    if not spec.resizable:
        c, h, w = spec.image_shape
        if image_size is not None and image_size != h:
            raise VaelabError(
                f"{name}: images are fixed at {h}x{w}, cannot use image size {image_size}; "
                f"image size only applies to folder:PATH and shapes"
            )
        if grayscale and c != 1:
            raise VaelabError(f"{name}: images are colour; grayscale only applies to folder:PATH")
    request = LoadRequest(resolve_data_root(data_dir), split, arg, image_size, grayscale, download, skip_bad_files)
    return spec.load(request)


def fetch(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """Download dataset `name` into the data root ahead of time (every split, md5-checked, read once to be
    sure); returns its folder, or None for a set with no files to fetch (shapes, folder:PATH)."""
    spec, _ = _lookup(name)
    if spec.missing is None:
        return None
    for split in SPLITS:
        load_images(name, split, data_dir=data_dir, download=True)
    return resolve_data_root(data_dir) / spec.name


def channels(name: str, grayscale: bool = False) -> int:
    """How many channels the images of dataset `name` have (1: grey, 3: colour), without loading them."""
    spec, _ = _lookup(name)
    return 1 if grayscale and spec.resizable else spec.image_shape[0]


def image_shape(name: str, image_size: int | None = None, grayscale: bool = False) -> tuple[int, int, int]:
    """The (C, H, W) that dataset `name` gives with these options, without loading it; "folder:" without a path
    (a preset's placeholder) is the folder set."""
    key, sep, _ = name.partition(":")
    spec = DATASETS[f"{key}:PATH"] if sep and f"{key}:PATH" in DATASETS else _lookup(name)[0]
    c, h, w = spec.image_shape
    if spec.resizable:
        c = 1 if grayscale else c
        h = w = image_size or h
    return c, h, w


def dataset_names() -> list[str]:
    """Registered dataset names, the folder set as "folder:PATH"."""
    return DATASETS.names()


def dataset_status(data_dir: str | os.PathLike | None = None) -> list[DatasetStatus]:
    """One row per dataset: whether its files are under the data root, and what it holds."""
    root = resolve_data_root(data_dir)
    rows = []
    for name in DATASETS.names():
        spec = DATASETS[name]
        path = None if spec.missing is None else root / name
        missing = () if path is None else tuple(spec.missing(path))
        rows.append(
            DatasetStatus(
                name, spec.description, not missing, path, missing, spec.image_shape, spec.num_train, spec.num_test
            )
        )
    return rows

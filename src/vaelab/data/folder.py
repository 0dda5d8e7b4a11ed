"""Your own images: the `folder:PATH` dataset.

- Files: every file under PATH, recursively, whose suffix is .png, .jpg,
  .jpeg, .bmp or .webp (when Pillow has WebP), in sorted order of their paths
  relative to PATH. Other files, and hidden files and folders (name starting
  with "."), are ignored. A listed file Pillow cannot read is an error.
- Pixels: EXIF orientation applied, transparent pixels composited onto
  black, then center-cropped to a square (aspect ratio kept, the longer side
  trimmed) and resized with Lanczos to image_size x image_size; RGB, or one
  grey channel with grayscale=True.
- Labels, as torchvision's ImageFolder: when no image sits directly in PATH,
  an image's label is the index of its first-level subfolder among the sorted
  subfolder names (class_names); otherwise labels are None.
- Splits: a folder has no test split, so a fixed 10% of the images (at least
  one when there are two or more), picked by a permutation with a fixed seed,
  is "test" and the rest is "train". The split depends only on the number of
  images.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, ImageOps, features

from ..errors import VaelabError
from .imageset import ImageSet

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"} | ({".webp"} if features.check("webp") else set()))
DEFAULT_SIZE = 64
TEST_FRACTION = 0.1
SPLIT_SEED = 1234


def find_images(root: Path) -> list[PurePosixPath]:
    """Image paths relative to `root`, sorted; hidden files and folders skipped."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        rel = PurePosixPath(Path(folder).relative_to(root).as_posix())
        found += [rel / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in EXTENSIONS]
    return sorted(found)


def split_indices(n: int, split: str) -> np.ndarray:
    """Sorted indices (into the sorted file list) of the images in `split`."""
    n_test = max(1, round(TEST_FRACTION * n)) if n >= 2 else 0
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(perm[:n_test] if split == "test" else perm[n_test:])


def load_folder(path_text: str, split: str, *, image_size: int, grayscale: bool) -> ImageSet:
    """Images (N, C, image_size, image_size) uint8 found under `path_text`; C = 1 if grayscale else 3."""
    root = Path(path_text).expanduser()
    if not root.exists():
        raise VaelabError(f"folder:{path_text}: {root} does not exist")
    if not root.is_dir():
        raise VaelabError(f"folder:{path_text}: {root} is not a folder")
    files = find_images(root)
    if not files:
        kinds = ", ".join(sorted(EXTENSIONS))
        raise VaelabError(f"folder:{path_text}: no images ({kinds}) found under {root}")
    chosen = split_indices(len(files), split)
    if len(chosen) == 0:
        raise VaelabError(
            f"folder:{path_text}: only {len(files)} image, too few to hold out a {split} split (need 2 or more)"
        )

    labels, class_names = None, None
    if all(len(f.parts) >= 2 for f in files):
        class_names = tuple(sorted({f.parts[0] for f in files}))
        index = {name: i for i, name in enumerate(class_names)}
        labels = torch.tensor([index[files[i].parts[0]] for i in chosen], dtype=torch.int64)

    mode = "L" if grayscale else "RGB"
    pixels = np.stack([_read(root / files[i], image_size, mode) for i in chosen])  # (N, S, S) or (N, S, S, 3)
    images = torch.from_numpy(pixels)
    images = images.unsqueeze(1) if grayscale else images.permute(0, 3, 1, 2).contiguous()  # (N, C, S, S)
    return ImageSet(images=images, labels=labels, class_names=class_names)


def _read(path: Path, size: int, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                img = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                img.alpha_composite(rgba)
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            # Crop first: resize(box=...) would let the filter see pixels outside the square.
            square = img.convert(mode).crop((left, top, left + side, top + side))
            return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise VaelabError(f"{path}: cannot read as an image ({e})") from None

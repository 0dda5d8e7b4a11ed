"""Your own images: the `folder:PATH` dataset.

- Files: every file under PATH, recursively, whose suffix is .png, .jpg,
  .jpeg, .bmp or .webp (when Pillow has WebP), in sorted order of their paths
  relative to PATH. Other files, and hidden files and folders (name starting
  with "."), are ignored. A listed file that is not a PNG, JPEG, BMP or WebP
  image Pillow can decode in full (empty, truncated, corrupt, or over
  Pillow's decompression-bomb limit of MAX_IMAGE_PIXELS) is an error naming
  it; with skip_bad_files=True such files are left out and counted, and one
  warning through `logging` names them.
- Pixels: 16-bit grey PNGs scaled to 8 bits (round(v / 257)), EXIF
  orientation applied, transparent pixels composited onto black, then
  center-cropped to a square (aspect ratio kept, the longer side trimmed)
  and resized with Lanczos to image_size x image_size; RGB, or one grey
  channel with grayscale=True.
- Labels, as torchvision's ImageFolder: when no image sits directly in PATH,
  an image's label is the index of its first-level subfolder among the sorted
  subfolder names (class_names); otherwise labels are None.
- Splits: a folder has no test split, so a fixed 10% of the images (at least
  one when there are two or more), picked by a permutation with a fixed seed,
  is "test" and the rest is "train". The split depends only on the number of
  listed files, so skipped files never move an image from one split to the
  other. The test split keeps the permutation's order, so its first N images
  (`vaelab evaluate --limit N`) are a random draw, not the first class
  subfolders.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path, PurePath, PurePosixPath

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError, features

from ..errors import VaelabError
from .imageset import ImageSet

log = logging.getLogger(__name__)

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"} | ({".webp"} if features.check("webp") else set()))
DEFAULT_SIZE = 64
TEST_FRACTION = 0.1
SPLIT_SEED = 1234
FORMATS = ("PNG", "JPEG", "BMP", "WEBP")  # Pillow plugins admitted, whatever the suffix says (never EPS, ...)
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # "I": how older Pillows open 16-bit grey PNGs


def find_images(root: Path) -> list[PurePosixPath]:
    """Image paths relative to `root`, sorted; hidden files and folders skipped."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        rel = PurePosixPath(Path(folder).relative_to(root).as_posix())
        found += [rel / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in EXTENSIONS]
    return sorted(found)


def split_indices(n: int, split: str) -> np.ndarray:
    """Indices (into the sorted file list) of the images in `split`: the train split sorted, the test split in
    the seeded permutation's order, so that any prefix of it is a random sample of the folder."""
    n_test = max(1, round(TEST_FRACTION * n)) if n >= 2 else 0
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return perm[:n_test] if split == "test" else np.sort(perm[n_test:])


def load_folder(
    path_text: str, split: str, *, image_size: int, grayscale: bool, skip_bad_files: bool = False
) -> ImageSet:
    """Images (N, C, image_size, image_size) uint8 found under `path_text`; C = 1 if grayscale else 3.

    skip_bad_files: leave out files that cannot be read as images (logged once, with their count)
    instead of failing on the first one.
    """
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

    images, kept = read_images(
        root,
        [files[i] for i in chosen],
        size=image_size,
        grayscale=grayscale,
        skip_bad_files=skip_bad_files,
        where=f"folder:{path_text}",
        split=split,
    )
    labels, class_names = subfolder_labels([files[chosen[i]] for i in kept], all_files=files)
    return ImageSet(images=images, labels=labels, class_names=class_names)


def read_images(
    root: Path,
    files: Sequence[PurePosixPath],
    *,
    size: int,
    grayscale: bool,
    skip_bad_files: bool = False,
    where: str = "",
    split: str = "",
    hint: str = "remove or replace it, or skip such files with --skip-bad-files",
) -> tuple[torch.Tensor, list[int]]:
    """`files` (relative to `root`) as uint8 (N, C, size, size), C = 1 if grayscale else 3, and the
    indices of the files read. An unreadable file is a one-line error naming it, or with
    `skip_bad_files` is left out (logged once, with the count); none readable is an error."""
    mode = "L" if grayscale else "RGB"
    pixels, kept, bad = [], [], []  # pixels: (S, S) or (S, S, 3) each; bad: (file, reason)
    for i, f in enumerate(files):
        try:
            pixels.append(_read(root / f, size, mode))
            kept.append(i)
        except _Unreadable as e:
            if not skip_bad_files:
                raise VaelabError(f"{_shown(root / f)}: cannot read as an image ({e}); {hint}") from None
            bad.append((f, str(e)))
    if bad:
        names = [_shown(f) for f, _ in bad[:3]] + (["..."] if len(bad) > 3 else [])
        names[0] += f" ({bad[0][1]})"
        log.warning(
            "%s: skipped %d unreadable file%s of %d%s: %s",
            where,
            len(bad),
            "" if len(bad) == 1 else "s",
            len(files),
            f" in the {split} split" if split else "",
            ", ".join(names),
        )
    if not pixels:
        raise VaelabError(
            f"{where}: none of the {len(files)} files{f' of the {split} split' if split else ''} is readable"
        )
    images = torch.from_numpy(np.stack(pixels))  # (N, S, S) or (N, S, S, 3)
    images = images.unsqueeze(1) if grayscale else images.permute(0, 3, 1, 2).contiguous()  # (N, C, S, S)
    return images, kept


def subfolder_labels(
    files: Sequence[PurePosixPath],
    *,
    all_files: Sequence[PurePosixPath] | None = None,
) -> tuple[torch.Tensor | None, tuple[str, ...] | None]:
    """Labels from the first path component when every image sits in a subfolder (ImageFolder's
    convention): the index of its folder among the sorted folder names of `all_files` (default `files`)."""
    every = files if all_files is None else all_files
    if not every or not all(len(f.parts) >= 2 for f in every):
        return None, None
    class_names = tuple(sorted({f.parts[0] for f in every}))
    index = {name: i for i, name in enumerate(class_names)}
    return torch.tensor([index[f.parts[0]] for f in files], dtype=torch.int64), class_names


class _Unreadable(Exception):
    """Why one file cannot be read as an image (the caller names the file)."""


def _shown(path: PurePath) -> str:
    """A path for a one-line message: as it is, or quoted with escapes when it holds a newline or the like."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _eight_bits(img: Image.Image) -> Image.Image:
    """A 16-bit grey image (a 16-bit PNG) as 8-bit grey, each value v as round(v / 257); others unchanged.

    Pillow's own conversion clips such values at 255 (mid-grey 32768 would
    turn white). A transparent grey value (tRNS) becomes an alpha channel
    first, as the exact 16-bit value. Pillow already hands 16-bit colour PNGs
    over as 8 bits (each value's high byte, within one level of v / 257).
    """
    if img.mode not in SIXTEEN_BIT_MODES:
        return img
    values = np.asarray(img).astype(np.int64)  # (H, W)
    grey = ((values.clip(0, 65535) + 128) // 257).astype(np.uint8)  # 257 = 65535 / 255; never a tie
    transparent = img.info.get("transparency")
    if isinstance(transparent, int):
        alpha = np.where(values == transparent, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey, alpha], axis=-1))  # LA
    return Image.fromarray(grey)  # L


def decode_image(data: bytes, *, size: int, grayscale: bool, max_pixels: int | None = None) -> torch.Tensor:
    """One image file's bytes (PNG, JPEG, BMP or WebP) as uint8 (C, size, size), C = 1 if grayscale else 3,
    read as the folder: dataset reads its files. Anything else, or an image declaring more than `max_pixels`
    pixels (refused from its header, before its body is decoded), is a VaelabError."""
    try:
        pixels = _decode(io.BytesIO(data), size, "L" if grayscale else "RGB", max_pixels)
    except _Unreadable as e:
        raise VaelabError(f"cannot read as an image ({e})") from None
    image = torch.from_numpy(np.array(pixels))  # (S, S) or (S, S, 3), writable
    return image.unsqueeze(0) if grayscale else image.permute(2, 0, 1).contiguous()


def _read(path: Path, size: int, mode: str) -> np.ndarray:
    """One image as (size, size) or (size, size, 3) uint8; _Unreadable if it cannot be."""
    if not path.is_file():  # a FIFO would block, a dangling link has nothing to read
        raise _Unreadable("not a regular file")
    return _decode(path, size, mode)


def _decode(source: Path | io.BytesIO, size: int, mode: str, max_pixels: int | None = None) -> np.ndarray:
    """`_read` of a file or of bytes in memory; images of more than `max_pixels` refused before decoding."""
    try:
        with warnings.catch_warnings():
            # Over MAX_IMAGE_PIXELS Pillow only warns (it raises at twice that): refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=FORMATS) as img:
                if max_pixels is not None and img.width * img.height > max_pixels:
                    raise _Unreadable(f"{img.width}x{img.height} pixels, more than {max_pixels} allowed")
                img.load()  # decode everything now: a truncated body fails here, not later
                img = _eight_bits(ImageOps.exif_transpose(img))
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
    except _Unreadable:
        raise
    except UnidentifiedImageError:
        raise _Unreadable(f"empty, cut short, or not {'/'.join(FORMATS)}") from None
    except Exception as e:  # a corrupt file can make a decoder raise almost anything (OSError, SyntaxError, ...)
        reason = " ".join(str(e).split())  # one line, whatever the message
        raise _Unreadable(f"{type(e).__name__}: {reason}") from None

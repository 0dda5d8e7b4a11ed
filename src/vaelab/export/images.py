"""Images in and out of `vaelab encode` / `vaelab decode`: files and folders read as the folder: dataset reads
them, and decoded images written one PNG each under names made from the files they came from."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from ..data import folder
from ..errors import VaelabError
from ..files import write_bytes
from ..viz.grid import png_bytes

MAX_STEM = 120  # characters of a PNG's name before ".png" (file systems allow 255 bytes)


def read_image_paths(paths: Sequence[str], image_shape: tuple[int, int, int]) -> tuple[torch.Tensor, list[str]]:
    """Image files and folders (every image under a folder, recursively, as the folder: dataset finds them),
    as uint8 (N, C, H, W) of `image_shape` (center-cropped to a square, resized with Lanczos, grey or RGB), and
    each image's path: a file as given, a folder's images as the folder joined with their relative paths."""
    c, h, w = image_shape
    if c not in (1, 3) or h != w:
        raise VaelabError(f"cannot read image files into shape {c}x{h}x{w} (need 1 or 3 channels, square)")
    listed: list[tuple[Path, list[PurePosixPath], list[str]]] = []  # (root, files relative to it, names)
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            files = folder.find_images(path)
            if not files:
                raise VaelabError(f"{text}: no images ({', '.join(sorted(folder.EXTENSIONS))}) found in this folder")
            listed.append((path, files, [os.path.join(text, str(f)) for f in files]))
        elif path.exists():  # a FIFO or a device is refused by the reader ("not a regular file")
            listed.append((path.parent, [PurePosixPath(path.name)], [text]))
        else:
            raise VaelabError(f"{text}: no such file or folder")
    images, names = [], []
    for root, files, shown in listed:  # everything is listed (and checked) before any image is decoded
        pixels, _ = folder.read_images(root, files, size=h, grayscale=c == 1, hint="remove it or name other images")
        images.append(pixels)
        names += shown
    return torch.cat(images), names


def png_names(files: Sequence[str] | None, n: int) -> list[str]:
    """One PNG name per decoded row: made from `files` (folders joined with "_", characters other than letters,
    digits, ".", "-" and "_" as "_", the suffix replaced by .png, "-2", "-3", ... after a name already taken,
    case-insensitively), or 00000.png, 00001.png, ... without them."""
    if files is None:
        return [f"{i:05d}.png" for i in range(n)]
    taken: set[str] = set()
    names = []
    for i, file in enumerate(files):
        path = PurePosixPath(file.replace("\\", "/"))
        parts = [p for p in path.with_suffix("").parts if p not in ("/", ".", "..")]
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", "_".join(parts)).lstrip(".")[-MAX_STEM:] or f"{i:05d}"
        name, count = f"{stem}.png", 1
        while name.casefold() in taken:
            count += 1
            name = f"{stem}-{count}.png"
        taken.add(name.casefold())
        names.append(name)
    return names


def write_pngs(images: torch.Tensor, folder_path: Path, names: Sequence[str]) -> None:
    """Images (N, C, H, W) in [0, 1] as one 8-bit PNG each (grey or RGB), each written atomically."""
    pixels = (images.detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for name, image in zip(names, pixels):  # image: (H, W, C)
        img = Image.fromarray(np.ascontiguousarray(image[..., 0] if image.shape[-1] == 1 else image))
        write_bytes(folder_path / name, png_bytes(img))

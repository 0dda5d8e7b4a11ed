"""The latents file of `vaelab encode` and `vaelab decode`: one .npz, read and written only here.

Keys written by `encode` (format `vaelab-latents`, version 1):

- `mu`, `logvar`: (N, D) float32, the posterior q(z|x) of each image; for a
  hierarchy the top group's q(z_1|x) (D = latent_dim, the top group's size);
- `files`: (N,) strings, each image's path as given on the command line (a
  folder's images as the folder joined with their paths inside it);
- metadata, 0-d arrays: `format`, `version`, `latent_dim`, `groups` (latent
  groups of the model), `image_shape` (3,), `preset`, `weights`,
  `vaelab_version`.

`decode` reads `z` when the file has one (latents of your own: edited,
interpolated, drawn), else `mu`: (N, latent_dim), any float dtype (used as
float32), finite. Integer or other dtypes are refused rather than converted.
`files` is optional.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VaelabError
from ..files import check_readable_file, os_errors, write_bytes
from ..version import __version__

FORMAT = "vaelab-latents"
VERSION = 1


@dataclass(frozen=True)
class Latents:
    """What `decode` reads from a latents file: z (N, D) float32 and the files they came from, if known."""

    z: np.ndarray
    key: str  # "z" or "mu": where z came from
    files: list[str] | None


def latents_bytes(
    mu: np.ndarray,
    logvar: np.ndarray,
    files: Sequence[str],
    *,
    groups: int,
    image_shape: Sequence[int],
    preset: str,
    weights: str,
) -> bytes:
    """The .npz (uncompressed) of `encode`'s results, in memory; see the module docstring for the keys."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        mu=np.asarray(mu, dtype=np.float32),
        logvar=np.asarray(logvar, dtype=np.float32),
        files=np.asarray([_storable(f) for f in files], dtype=np.str_).reshape(len(files)),
        format=np.asarray(FORMAT),
        version=np.asarray(VERSION),
        latent_dim=np.asarray(mu.shape[1]),
        groups=np.asarray(groups),
        image_shape=np.asarray(list(image_shape), dtype=np.int64),
        preset=np.asarray(preset),
        weights=np.asarray(weights),
        vaelab_version=np.asarray(__version__),
    )
    return buffer.getvalue()


def write_latents(path: str | Path, mu: np.ndarray, logvar: np.ndarray, files: Sequence[str], **meta) -> Path:
    """Write the latents file atomically (`vaelab.files.write_bytes`); returns the path written."""
    return write_bytes(path, latents_bytes(mu, logvar, files, **meta))


def read_latents(path: str | Path, latent_dim: int) -> Latents:
    """The latents to decode from an .npz: `z` if present, else `mu`, checked (2-D, `latent_dim` wide, float,
    finite, at least one row) and as float32; with `files` when the file has them, one per row."""
    path = Path(path)
    check_readable_file(path, "latents file")
    with os_errors(f"cannot read {path}"):
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files if key in ("z", "mu", "files")}
        except (ValueError, zipfile.BadZipFile, EOFError) as e:  # not an .npz, a cut-off one, pickled objects
            reason = " ".join(str(e).split()) or type(e).__name__
            raise VaelabError(f"{path}: not a readable .npz file ({reason})") from None
    key = "z" if "z" in arrays else "mu" if "mu" in arrays else None
    if key is None:
        raise VaelabError(f"{path}: no latents: the file has neither a 'z' nor a 'mu' array")
    z = arrays[key]
    where = f"{path}: '{key}'"
    if z.ndim != 2:
        raise VaelabError(f"{where} must be (N, {latent_dim}), one row of latents per image; got shape {z.shape}")
    if z.shape[1] != latent_dim:
        raise VaelabError(f"{where} has {z.shape[1]} columns, but the run's latent_dim is {latent_dim}")
    if z.shape[0] == 0:
        raise VaelabError(f"{where} has no rows: nothing to decode")
    if z.dtype.kind != "f":
        raise VaelabError(f"{where} holds {z.dtype} values; latents must be floating point (write them as float32)")
    z = z.astype(np.float32)
    bad = ~np.isfinite(z)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise VaelabError(f"{where} holds {int(bad.sum())} values that are not finite (NaN or inf), first in row {row}")
    files = None
    if "files" in arrays:
        names = arrays["files"]
        if names.dtype.kind != "U" or names.shape != (z.shape[0],):
            raise VaelabError(
                f"{path}: 'files' must be {z.shape[0]} strings, one per row of '{key}'; got {names.dtype} {names.shape}"
            )
        files = [str(name) for name in names]
    return Latents(z=z, key=key, files=files)


def _storable(name: str) -> str:
    """A file name as text numpy can store (a name read from disk may hold undecodable bytes as surrogates)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

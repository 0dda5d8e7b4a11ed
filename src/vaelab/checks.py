"""One rule per kind of value, shared by the command line, TOML configs and the Python API.

Each check returns the value when it is acceptable and otherwise raises a
`VaelabError` whose one line names the setting ("train.lr must be a finite
number, got inf"). With `name=None` the line starts at "must be ...", for
argparse, which names the flag itself. The limits below are the largest
values that make sense end to end; `memory` refuses a request whose memory
need is known in advance and larger than the machine's memory.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import NoReturn

from .errors import VaelabError

# torch's CPU generator keeps only the low 32 bits of a seed (seeds 5 and 2**32 + 5 draw the same
# numbers), numpy refuses seeds above 2**32 - 1, and the per-step noise seed packs the run's seed
# into 32 bits (`models.noise.step_seed`): larger seeds would silently repeat smaller ones.
SEED_MAX = 2**32 - 1
MAX_IMAGE_SIZE = 1024  # folder: and shapes images, per side: 3 MB per RGB image as uint8, 12 MB as floats
MAX_LATENT_DIM = 65_536  # above the pixel count of a 128x128 RGB image: a larger code is no compression
MAX_BATCH_SIZE = 1 << 20  # images per batch: a sanity bound, 17x MNIST's 60,000 (a batch holds at most the set)
MAX_SAMPLE_GRID = 1024  # fixed-noise samples drawn and saved as one grid after every epoch (32 x 32)
MAX_LATENT_RANGE = 1000.0  # `plot --range`: N(0, 1) has no mass past ~40; float32 decoders stay finite here
MAX_THREADS = 1024  # CPU threads: more than any machine has cores
MAX_IWAE_K = 10_000  # importance samples per training image: each is a decoder pass of the batch
FLOAT32_BYTES = 4


def whole(name: str | None, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int if it is a whole number (an int or numpy integer; a bool is not) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(name, f"must be a whole number, got {value!r}")
    _bounds(name, int(value), low, high, low_open=False)
    return int(value)


def real(
    name: str | None, value: object, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> float:
    """`value` as a float if it is a finite real number (not a bool) with low <= value <= high
    (low < value with `low_open`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(name, f"must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        _fail(name, f"must be a finite number, got {value}")
    _bounds(name, number, low, high, low_open=low_open)
    return number


def seed(name: str | None, value: object) -> int:
    """A seed: a whole number in [0, SEED_MAX]."""
    return whole(name, value, low=0, high=SEED_MAX)


def latent_range(name: str | None, value: object) -> float:
    """R of a latent grid over [-R, R]: finite, > 0 and at most MAX_LATENT_RANGE."""
    return real(name, value, low=0, low_open=True, high=MAX_LATENT_RANGE)


def temperature(name: str | None, value: object) -> float:
    """The scale of the prior noise when sampling: finite and > 0."""
    return real(name, value, low=0, low_open=True)


def decay(name: str | None, value: object) -> float:
    """The decay of a moving average: in (0, 1)."""
    number = real(name, value, low=0, low_open=True, high=1)
    if number == 1:
        _fail(name, "must be below 1 (such as 0.999), got 1")
    return number


def memory(what: str, nbytes: int) -> None:
    """Refuse `what` when the `nbytes` it needs at least are more than the machine's memory."""
    available = machine_memory()
    if available is not None and nbytes > available:
        raise VaelabError(
            f"{what} would need at least {size_text(nbytes)} of memory; this machine has {size_text(available)}"
        )


def machine_memory() -> int | None:
    """The machine's memory in bytes (MemTotal of /proc/meminfo, else sysconf), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024  # "MemTotal:  24683772 kB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def size_text(nbytes: float) -> str:
    """Bytes in decimal units: '3.14 TB', '25.3 GB', '512 B'."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    while nbytes >= 1000 and len(units) > 1:
        nbytes, units = nbytes / 1000, units[1:]
    return f"{nbytes:.3g} {units[0]}"


def iwae_memory(k: int, chunk: int, batch_size: int, n_images: int, image_shape: tuple[int, ...]) -> None:
    """Refuse an IWAE bound whose buffers cannot fit, sized as `evaluation.iwae.log_weights` allocates them.

    Per batch of b = min(batch_size, n_images) images: the log-weights, k
    float32 per image; and per decoder pass, min(k, chunk // b) samples of
    min(b, chunk) images: the decoder's output and the likelihood's per-pixel
    log-probabilities, two float32 per pixel (the stated factor). The
    decoder's own activations come on top (from 2x the image for mlp2 to
    64x for the convolutional presets), so this is a lower bound: what it
    refuses could never have run.
    """
    b = max(1, min(batch_size, n_images))
    pairs = min(k, max(1, chunk // b)) * min(b, chunk)  # (image, sample) pairs per decoder pass
    memory(
        f"the IWAE bound with k={k} and chunk={chunk} on batches of {b} images",
        (k * b + 2 * pairs * math.prod(image_shape)) * FLOAT32_BYTES,
    )


def _bounds(name: str | None, value: float, low: float | None, high: float | None, *, low_open: bool) -> None:
    if low is not None and (value < low or (low_open and value == low)):
        _fail(name, f"must be {'>' if low_open else '>='} {_number(low)}, got {_number(value)}")
    if high is not None and value > high:
        _fail(name, f"must be <= {_number(high)}, got {_number(value)}")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _fail(name: str | None, problem: str) -> NoReturn:
    raise VaelabError(f"{name} {problem}" if name else problem)

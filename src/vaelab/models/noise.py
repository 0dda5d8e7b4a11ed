"""Where the model's random draws (the reparameterisation's eps) come from.

Outside training: the global torch RNG, as usual. A training step installs a
`StepNoise`: its draws depend only on (seed, step) and are made for the whole
global batch, of which this process keeps its own rows. So a data-parallel run
draws exactly the noise one process training the same global batch would, and
a resumed run continues bit-identically without any saved RNG state. The
same context tells the objective which step it is (`current_step`), for a
schedule such as the KL warm-up.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepNoise:
    """The draws of one training step: `generator`, seeded for the step; this process's `rows` of `batch`."""

    generator: torch.Generator
    rows: slice  # [start, stop) of the global batch
    batch: int  # global batch size
    step: int  # the run's step (0-based): the objective reads it for a schedule (KL warm-up)

    def standard_normal(
        self, shape: tuple[int, ...], batch_dim: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        start, stop = self.rows.start, self.rows.stop
        if shape[batch_dim] != stop - start:
            raise ValueError(
                f"noise for {shape[batch_dim]} rows asked for, but this step holds rows {start}:{stop} of {self.batch}"
            )
        full = list(shape)
        full[batch_dim] = self.batch
        eps = torch.randn(full, dtype=dtype, device=device, generator=self.generator)
        return eps.narrow(batch_dim, start, stop - start)


_current: contextvars.ContextVar[StepNoise | None] = contextvars.ContextVar("vaelab_step_noise", default=None)


def in_training_step() -> bool:
    """Whether the code runs inside vaelab's own training step (`step_noise`), whose batches are images
    converted from uint8, in [0, 1] by construction."""
    return _current.get() is not None


def current_step() -> int | None:
    """The training step in progress (0-based), None outside vaelab's training step (`model(x)` of a user)."""
    source = _current.get()
    return None if source is None else source.step


def standard_normal(
    shape: tuple[int, ...], *, batch_dim: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """N(0, 1) noise of `shape`, whose dim `batch_dim` runs over the batch's images."""
    source = _current.get()
    if source is None:
        return torch.randn(shape, dtype=dtype, device=device)
    return source.standard_normal(tuple(shape), batch_dim, dtype, device)


def step_seed(seed: int, step: int) -> int:
    """A distinct 64-bit generator seed for every (run seed, step)."""
    return (seed << 32 | step) & 0xFFFF_FFFF_FFFF_FFFF


@contextlib.contextmanager
def step_noise(generator: torch.Generator, seed: int, step: int, rows: slice, batch: int) -> Iterator[None]:
    """Inside: noise for step `step` of a run seeded `seed`; `generator` is re-seeded for it."""
    generator.manual_seed(step_seed(seed, step))
    token = _current.set(StepNoise(generator, rows, batch, step))
    try:
        yield
    finally:
        _current.reset(token)

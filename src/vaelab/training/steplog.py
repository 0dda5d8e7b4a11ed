"""The loss between epochs (RUN/steps.jsonl), a hint when training slows down, and the thread count back up
when the machine is free again.

The loop keeps running sums of the per-example terms on the device; a
`StepLog` remembers where its window began and, at `flush`, turns the
difference into one line with one host sync: every `LOG_EVERY` batches of
an epoch, before every checkpoint (so the file is complete up to any
checkpoint a resume starts from) and at the end of an epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from ..runtime import fewer_threads_if_busy, more_threads_if_idle
from .checkpoint import Progress
from .distributed import Dist

SLOW_FRACTION = 0.25  # a window this far below the epoch's reference rate gets the hint
MIN_WINDOW_STEPS = 10  # shorter windows (cut by a checkpoint or the epoch's end) time too noisily to judge


def slowdown(rates: Sequence[float], fraction: float = SLOW_FRACTION) -> tuple[float, float] | None:
    """(reference, last) when the last of an epoch's window rates is below `fraction` of the reference,
    the epoch's first full window: rates[1], since rates[0] includes the warm-up. Else None."""
    if len(rates) < 3:
        return None
    reference, last = rates[1], rates[-1]
    return (reference, last) if last < fraction * reference else None


def slowdown_hint(reference: float, rate: float, change: str | None = None) -> str:
    """The one line said when training slows down; `change`: the thread count vaelab switched to, if it did."""
    if change is not None:
        return (
            f"vaelab: training slowed from {reference:,.0f} to {rate:,.0f} images/s: other work is using the CPU; "
            f"now training with {change} (--threads N fixes the count; see docs/performance.md)."
        )
    return (
        f"vaelab: training slowed from {reference:,.0f} to {rate:,.0f} images/s; is the machine busy? "
        f"On a busy CPU, --threads 1 is often much faster (see docs/performance.md)."
    )


class StepLog:
    """Windows of steps -> {step, epoch, loss, recon, kl, <extra>, beta, images_per_s} (per image, over the
    window's applied steps; images/s counts those images too, as metrics.jsonl does; `extra`: the names of the
    objective's terms summed after loss, elbo, recon and kl (β-TCVAE's mi, tc, dwkl); `beta`, given `beta_at`,
    is the KL's weight in force at the window's last step). Under torchrun the means are over every rank's
    images (one small all-reduce per line); `write` is given on rank 0 only."""

    def __init__(
        self,
        write: Callable[[dict], None] | None,
        log: Callable[[str], None],
        dist: Dist,
        *,
        beta_at: Callable[[int], float] | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.write, self.log, self.dist, self.beta_at, self.extra = write, log, dist, beta_at, tuple(extra)
        self.hinted = False

    def start_epoch(self, sums: torch.Tensor, p: Progress) -> None:
        """A new epoch: its own reference rate; and, after a slowdown made vaelab train on fewer threads, the
        threads back once the other work is gone (then a later slowdown may lower them again)."""
        self.rates: list[float] = []
        change = more_threads_if_idle()
        if change is not None:
            self.log(f"vaelab: the CPU is free again; now training with {change}.")
            self.hinted = False
        self.restart(sums, p)

    def restart(self, sums: torch.Tensor, p: Progress) -> None:
        """A new window from here (after a checkpoint: its time is not training's)."""
        self.mark, self.step, self.images, self.skipped = sums.clone(), p.step, p.images, p.skipped
        self.began = time.perf_counter()

    def flush(self, epoch: int, p: Progress, sums: torch.Tensor) -> dict | None:
        """The window's line (None when it holds no step); written, and judged for the hint."""
        if p.step == self.step:
            return None
        loss, _, recon, kl, *extra = self.dist.sum(sums - self.mark).tolist()  # loss, elbo, recon, kl, ...: the sync
        seconds, images = time.perf_counter() - self.began, p.images - self.images
        mean = (lambda v: v / images) if images else (lambda v: float("nan"))
        record = {
            "step": p.step,
            "epoch": epoch,
            "loss": mean(loss),
            "recon": mean(recon),
            "kl": mean(kl),
            **{name: mean(value) for name, value in zip(self.extra, extra, strict=True)},
            **({} if self.beta_at is None else {"beta": self.beta_at(p.step - 1)}),
            "images_per_s": images / seconds if seconds > 0 else float("nan"),
        }
        if self.write is not None:
            self.write(record)
        if p.step - self.step >= MIN_WINDOW_STEPS and p.skipped == self.skipped and seconds > 0:
            self.rates.append(record["images_per_s"])
            slow = slowdown(self.rates)
            if slow and not self.hinted:
                self.hinted = True
                self.log(slowdown_hint(*slow, fewer_threads_if_busy()))
        self.restart(sums, p)
        return record

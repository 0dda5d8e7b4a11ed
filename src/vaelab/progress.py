"""How far a long wait has got, on standard error (standard output stays the command's result).

On a terminal: a tqdm bar with the rate and the time left. Anywhere else (a
log file, CI, nohup): one plain line every `INTERVAL_S` seconds,

    vaelab: evaluating: IWAE k=100: 1,200/10,000 images (12%), 35 s, ~4 min left

so a wait shorter than that prints nothing. Callers pass a `Reporter` down
(a task name and whether to show anything at all); the loop that waits
starts a `ProgressBar` from it. Nothing of vaelab's is imported here.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Self, TextIO

from tqdm.auto import tqdm

INTERVAL_S = 30.0  # between two lines when standard error is not a terminal


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def duration(seconds: float) -> str:
    """'35 s', '4 min', '2 h 05 min'."""
    if seconds < 99.5:
        return f"{seconds:.0f} s"
    if seconds < 99.5 * 60:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


class ProgressBar:
    """`done` of `total` units (None: not known), shown as the module docstring says; `note` is appended
    (the training loss). `update` may add fractions of a unit; what is shown is rounded."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "images",
        initial: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        self.total, self.desc, self.unit, self.done, self.note = total, desc, unit, initial, ""
        self.enabled = enabled
        self._initial = initial
        self._stream = stream if stream is not None else sys.stderr
        self._interval = INTERVAL_S if interval is None else interval
        self._start = self._last = time.monotonic()
        self._bar = None
        if enabled and _is_terminal(self._stream):
            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit=f" {unit}",
                leave=False,
                file=self._stream,
                dynamic_ncols=True,
            )

    def update(self, n: float = 1) -> None:
        self.done += n
        if self._bar is not None:
            shown = round(self.done) - self._bar.n
            if shown:
                self._bar.update(shown)
        elif self.enabled:
            now = time.monotonic()
            if now - self._last >= self._interval:
                self._last = now
                print(self.line(now), file=self._stream, flush=True)

    def set_note(self, note: str) -> None:
        self.note = note
        if self._bar is not None:
            self._bar.set_postfix_str(note, refresh=False)

    def line(self, now: float | None = None) -> str:
        """The periodic line: 'vaelab: DESC: DONE/TOTAL UNIT (P%), ELAPSED, ~LEFT left, NOTE'."""
        elapsed = (time.monotonic() if now is None else now) - self._start
        done = round(self.done)
        if self.total:
            parts = [f"{done:,}/{self.total:,} {self.unit} ({100 * done // self.total}%)", duration(elapsed)]
            rate = (self.done - self._initial) / elapsed if elapsed > 0 else 0.0
            if rate > 0:
                parts.append(f"~{duration(max(self.total - self.done, 0) / rate)} left")
        else:
            parts = [f"{done:,} {self.unit}", duration(elapsed)]
        return f"vaelab: {self.desc}: " + ", ".join(parts + ([self.note] if self.note else []))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Reporter:
    """What a command passes down to its long loops: its name ('evaluating') and whether to show anything."""

    task: str = ""
    enabled: bool = True

    def bar(self, total: int | None, what: str, *, unit: str = "images", initial: int = 0) -> ProgressBar:
        desc = f"{self.task}: {what}" if self.task and what else self.task or what
        return ProgressBar(total, desc, unit=unit, initial=initial, enabled=self.enabled)


QUIET = Reporter(enabled=False)

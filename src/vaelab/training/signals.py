"""Turn SIGINT and SIGTERM into a request that the loop honours after the step in progress."""

from __future__ import annotations

import signal
import threading


class StopRequests:
    """Context manager: while active, SIGINT/SIGTERM set `requested` instead of killing the process.

    A second SIGINT raises KeyboardInterrupt at once, for a user who does not
    want to wait. Outside the main thread (where Python cannot install signal
    handlers) it does nothing.
    """

    SIGNALS = {signal.SIGINT: ("SIGINT", 130), signal.SIGTERM: ("SIGTERM", 143)}

    def __init__(self) -> None:
        self.requested: str | None = None
        self.exit_code = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.exit_code = self.SIGNALS[signum]

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

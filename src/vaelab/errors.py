"""The one exception type that means "the user gave us something we cannot use".

The command line turns it into a single line on stderr and exit code 2; the
Python API lets it propagate. Anything else escaping is a bug in vaelab.
"""


class VaelabError(Exception):
    """A user-facing error: bad input, missing data, a file that is not a run."""


class TrainingStopped(VaelabError):
    """Training stopped early on purpose (a signal, or updates that kept diverging); the last checkpoint is kept."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

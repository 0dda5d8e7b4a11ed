"""Shared by the CLI error tests: run `vaelab ARGV` in-process and demand the one-line, exit-2 error."""

import pytest

from vaelab.cli import main


def one_line_error(capsys, argv) -> str:
    """The single stderr line of a user error; fails unless the exit code is 2 and there is no traceback."""
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err

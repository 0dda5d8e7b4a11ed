"""Where datasets live on disk: `ROOT/<name>/` with the files' original names."""

from __future__ import annotations

import os
import pathlib

ENV_VAR = "VAELAB_DATA_DIR"


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The data root, absolute: `data_dir` (the --data-dir argument) if given,
    else the environment variable VAELAB_DATA_DIR, else the user cache folder
    ($XDG_CACHE_HOME/vaelab/data or ~/.cache/vaelab/data; %LOCALAPPDATA%\\vaelab\\data
    on Windows). Empty strings count as unset. The folder is not created here.
    """
    if data_dir is not None and str(data_dir) != "":
        chosen = pathlib.Path(data_dir)
    elif os.environ.get(ENV_VAR):
        chosen = pathlib.Path(os.environ[ENV_VAR])
    else:
        chosen = _user_cache_dir() / "vaelab" / "data"
    return chosen.expanduser().resolve()


def _user_cache_dir() -> pathlib.Path:
    if os.name == "nt":
        local = os.environ.get("LOCALAPPDATA")
        return pathlib.Path(local) if local else pathlib.Path.home() / "AppData" / "Local"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return pathlib.Path(xdg)
    return pathlib.Path.home() / ".cache"

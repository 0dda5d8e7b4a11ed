"""The files vaelab reads back from a run directory, each checked against its schema once, when it is read.

metrics.jsonl  one object per finished epoch with `METRICS_FIELDS` (the loop's
               `_epoch_record`), and, where they were logged
               (`OPTIONAL_METRICS`), `train_beta` (older files lack it) and
               an objective's extra terms (β-TCVAE's train_mi, train_tc,
               train_dwkl; FactorVAE's train_tc); more keys may
               follow. A line that is not UTF-8, not JSON, not an object,
               lacks a key, holds a value of the wrong type, or does not
               come after the epoch before it is left out and reported as a
               `Problem`: one damaged line never costs the others.
steps.jsonl    one object per window of training steps with `STEPS_FIELDS`
               (see `training.steplog`), `step` increasing, and `beta` and
               the extra terms (mi, tc, dwkl) where they were logged
               (`OPTIONAL_STEPS`); checked as metrics.jsonl is.
eval.json      one object, as `vaelab evaluate` writes it: `EVAL_REQUIRED`
               keys, `EVAL_FIELDS` typed, any other key a JSON scalar or a
               flat list of them (what the report can show). It is the
               latest evaluation; evals/<settings>.json keep every one, each
               with when and by which versions it was saved (`read_evals`).
config.toml    the resolved config of the run, as `vaelab.config.to_toml` writes it.

Readers never raise on damaged content: they return what is good and what
is wrong, for the caller to warn about or repair. Past them, values are
typed (numbers are floats, counts are ints) and in range. A path that is not
a regular file (a FIFO would block a reader forever) is a one-line
`VaelabError`, as is an error of the operating system. The value checks
(`parse_json`, `kind_of`, `is_count`) serve the checkpoint's metadata too
(see `checkpoint.load_checkpoint`).
"""

from __future__ import annotations

import json
import reprlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import from_dict
from ..errors import VaelabError
from ..files import check_readable_file, os_errors

MAX_COUNT = 2**63 - 1  # counts past a 64-bit integer are damage, not training


@dataclass(frozen=True)
class Problem:
    """A line of a file that was left out, and why."""

    line: int  # 1-based
    why: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.why}"


# --------------------------------------------------------------------------- value checks (the checkpoint's too)


def parse_json(data: str | bytes) -> Any:
    """Decode JSON (bytes: UTF-8); ValueError saying why, in a few words, when it does not."""
    try:
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except RecursionError:
        raise ValueError("not JSON (nested too deeply)") from None
    except ValueError:  # JSONDecodeError, and integers too long to read
        raise ValueError("not JSON") from None


def kind_of(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words: 'an object', 'a list', 'a number'..."""
    kinds = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return kinds.get(type(value), type(value).__name__)


def is_count(value: Any, least: int = 0) -> bool:
    """An int (not a bool) from `least` up to MAX_COUNT."""
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= MAX_COUNT


def _count(least: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not is_count(value, least):
            raise ValueError(f"is {reprlib.repr(value)}, not a whole number >= {least}")
        return value

    return check


def _number(value: Any) -> float:
    """An int or a float (NaN and infinities too: json.dumps writes them) -> a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"is {reprlib.repr(value)}, not a number")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"is {reprlib.repr(value)}, too large for a number") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"is {reprlib.repr(value)}, not a string")
    return value


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _list_of(check: Callable[[Any], Any]) -> Callable[[Any], list]:
    def checked(value: Any) -> list:
        if not isinstance(value, list):
            raise TypeError(f"is {reprlib.repr(value)}, not a list")
        return [check(v) for v in value]

    return checked


def _scalar_or_flat_list(value: Any) -> Any:
    """What the report can show of a key it does not know."""
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, scalar) or isinstance(value, list) and all(isinstance(v, scalar) for v in value):
        return value
    raise TypeError(f"is {reprlib.repr(value)}, not a value or a flat list of values")


def _fields(
    values: Any, schema: dict[str, Callable[[Any], Any]], required, others: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """An object's values checked and converted by `schema` (keys it does not name: by `others`, else kept);
    TypeError or ValueError saying why at the first that is wrong."""
    if not isinstance(values, dict):
        raise TypeError(f"{kind_of(values)}, not an object")
    missing = [key for key in required if key not in values]
    if missing:
        raise ValueError(f"missing key {missing[0]!r}")
    out = {}
    for key, value in values.items():
        check = schema.get(key, others)
        try:
            out[key] = value if check is None else check(value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{key!r} {e}") from None
    return out


def _read_bytes(path: Path, what: str) -> bytes | None:
    """The file's bytes, None when there is none; a one-line error for a FIFO, a folder or an OS error."""
    if not path.exists():
        return None
    check_readable_file(path, what)
    with os_errors(f"cannot read {what} {path}"):
        return path.read_bytes()


# --------------------------------------------------------------------------- metrics.jsonl

_NUMBERS = (
    "train_loss",
    "train_elbo",
    "train_recon",
    "train_kl",
    "val_elbo",
    "val_recon",
    "val_kl",
    "seconds",
    "images_per_s",
)
METRICS_FIELDS: dict[str, Callable[[Any], Any]] = {
    "epoch": _count(1),
    "step": _count(0),
    "skipped_steps": _count(0),
    "val_split": _text,
    **{key: _number for key in _NUMBERS},
}
OPTIONAL_METRICS: dict[str, Callable[[Any], Any]] = {  # checked where present
    "train_beta": _number,
    "val_kl_groups": _list_of(_number),  # a hierarchy's KL per latent group, top first
    **{f"train_{key}": _number for key in ("mi", "tc", "dwkl")},  # an objective's `extra_terms`
}


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The good records of a metrics.jsonl (none when it is missing) and a `Problem` for every line left out."""
    return _read_lines(path, "metrics", METRICS_FIELDS, order="epoch", optional=OPTIONAL_METRICS)


def _read_lines(
    path: Path,
    what: str,
    schema: dict[str, Callable[[Any], Any]],
    order: str,
    optional: dict[str, Callable[[Any], Any]] | None = None,
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The good records of a JSON-lines file, each with every key of `schema` (and those of `optional` that
    it has, checked too) and `order` increasing."""
    typed = {**(optional or {}), **schema}
    data = _read_bytes(path, what)
    records: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for number, line in enumerate((data or b"").split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            record = _fields(parse_json(line), typed, required=schema)
            if records and record[order] <= records[-1][order]:
                raise ValueError(f"{order} {record[order]} does not follow {order} {records[-1][order]}")
        except (TypeError, ValueError) as e:
            problems.append(Problem(number, str(e)))
            continue
        records.append(record)
    return records, problems


# --------------------------------------------------------------------------- steps.jsonl

STEPS_FIELDS: dict[str, Callable[[Any], Any]] = {
    "step": _count(1),
    "epoch": _count(1),
    **{key: _number for key in ("loss", "recon", "kl", "images_per_s")},
}
OPTIONAL_STEPS: dict[str, Callable[[Any], Any]] = {  # checked where present
    "beta": _number,
    **{key: _number for key in ("mi", "tc", "dwkl")},  # an objective's `extra_terms`
}


def read_steps(path: Path) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The good records of a steps.jsonl (none when it is missing) and a `Problem` for every line left out."""
    return _read_lines(path, "step losses", STEPS_FIELDS, order="step", optional=OPTIONAL_STEPS)


def describe_dropped(path: Path, problems: list[Problem], shown: int = 3) -> str:
    """One line: 'RUN/metrics.jsonl: dropped 2 damaged lines (line 3: not JSON; line 5: missing key ...)'."""
    listed = "; ".join(str(p) for p in problems[:shown]) + ("; ..." if len(problems) > shown else "")
    lines = "line" if len(problems) == 1 else "lines"
    return f"{path}: dropped {len(problems)} damaged {lines} ({listed})"


# --------------------------------------------------------------------------- eval.json

EVAL_REQUIRED = ("split", "n", "elbo")
EVAL_FIELDS: dict[str, Callable[[Any], Any]] = {
    "split": _text,
    "n": _count(0),
    "seed": _count(-MAX_COUNT - 1),
    "k": _count(0),
    "latent_dim": _count(1),
    "active_units": _count(0),
    "elbo": _number,
    "recon": _number,
    "kl": _number,
    "recon_mse": _number,
    "nll_iwae": _optional(_number),
    "iwae_gap": _optional(_number),
    "bits_per_dim": _optional(_number),
    # the standard error of each mean over the images (None for one image; absent before vaelab saved them)
    **{
        f"{key}_se": _optional(_number)
        for key in ("elbo", "recon", "kl", "recon_mse", "nll_iwae", "iwae_gap", "bits_per_dim")
    },
    "bits_per_dim_from": _optional(_text),
    "bits_per_dim_note": _optional(_text),
    "kl_per_dim": _list_of(_number),
    "kl_per_group": _list_of(_number),  # a hierarchy's, top first
    "kl_per_group_se": _optional(_list_of(_optional(_number))),
    "group_dims": _list_of(_count(1)),
    "active_units_per_group": _list_of(_count(0)),
    "frechet_distance": _optional(_number),
    "frechet_n": _optional(_count(1)),
    "frechet_classifier": _optional(_text),
    "frechet_classifier_accuracy": _optional(_number),
    "frechet_note": _optional(_text),
    "frechet_distance_expost": _optional(_number),  # with --expost-levels: the top groups from a fitted Gaussian
    "expost_levels": _optional(_count(1)),
    "expost_groups": _optional(_count(1)),
    "expost_n": _optional(_count(1)),
    "weights": _optional(_text),  # "ema" or "raw" (absent before vaelab had EMA weights: "raw")
    "dataset": _text,
    "preset": _text,
    "classes": _optional(_list_of(_count(0))),
    "device": _optional(_text),
    "date": _optional(_text),
    "torch_version": _optional(_text),
    "vaelab_version": _optional(_text),
}
EVALS_DIR = "evals"  # RUN/evals/: every evaluation, one file per set of settings (`eval_name`)
SAVED_KEYS = ("date", "torch_version", "vaelab_version")  # when and by what a file in evals/ was saved


def read_eval(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the evaluation, None), (None, None) when there is no eval.json, or (None, why it cannot be used)."""
    data = _read_bytes(path, "saved evaluation")
    if data is None:
        return None, None
    try:
        return _fields(parse_json(data), EVAL_FIELDS, required=EVAL_REQUIRED, others=_scalar_or_flat_list), None
    except (TypeError, ValueError) as e:
        return None, f"{path}: {e}"


def eval_name(evaluation: dict[str, Any]) -> str:
    """An evaluation's file in RUN/evals/, named by its settings, so that one with other settings (a quick
    `--iwae-k 10`, a `--limit`, `--weights raw`) never replaces it:
    `<split>-k<K>-seed<S>-n<N>[-fd<N>[-expost<L>]][-ema].json` (`-ema`: measured with the moving average of the weights,
    which only a run trained with train.ema has; a run without one keeps the plain names)."""
    fd = f"-fd{evaluation['frechet_n']}" if evaluation.get("frechet_n") else ""
    fd += f"-expost{evaluation['expost_levels']}" if fd and evaluation.get("expost_levels") else ""
    ema = "-ema" if evaluation.get("weights") == "ema" else ""
    k, seed = evaluation.get("k") or 0, evaluation.get("seed", 0)
    return f"{evaluation['split']}-k{k}-seed{seed}-n{evaluation['n']}{fd}{ema}.json"


def saved_at(path: Path, evaluation: dict[str, Any]) -> str:
    """When an evaluation was saved, as `YYYY-MM-DDTHH:MM:SS`: its `date`, else (an older vaelab's eval.json)
    the file's modification time."""
    if evaluation.get("date"):
        return evaluation["date"]
    try:
        return datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
    except OSError:
        return ""


def read_evals(run: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[str]]:
    """Every saved evaluation of a run, newest first: the files in RUN/evals/, and RUN/eval.json (the latest)
    where it is none of them (a run evaluated by an older vaelab); and why each file left out cannot be used."""
    found: list[tuple[Path, dict[str, Any]]] = []
    problems: list[str] = []
    folder = run / EVALS_DIR
    with os_errors(f"cannot read the evaluations in {folder}"):
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    for path in paths:
        try:
            evaluation, problem = read_eval(path)
        except VaelabError as e:  # a FIFO or an unreadable file: one file never costs the others
            evaluation, problem = None, str(e)
        if problem:
            problems.append(problem)
        elif evaluation is not None:
            found.append((path, evaluation))
    latest, problem = read_eval(run / "eval.json")
    if problem:
        problems.append(problem)
    elif latest is not None and not any(_same_numbers(latest, e) for _, e in found):
        found.append((run / "eval.json", latest))
    found.sort(key=lambda item: saved_at(*item), reverse=True)
    return found, problems


def _same_numbers(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same evaluation, whenever and by whatever it was saved."""
    return {k: v for k, v in a.items() if k not in SAVED_KEYS} == {k: v for k, v in b.items() if k not in SAVED_KEYS}


# --------------------------------------------------------------------------- config.toml


def read_config_text(path: Path) -> tuple[str, str | None]:
    """The run's config.toml as text ('' when there is none) and, when it is not a valid config, why."""
    data = _read_bytes(path, "config")
    if data is None:
        return "", None
    text = data.decode("utf-8", "replace")
    try:
        from_dict(tomllib.loads(data.decode("utf-8")))
    except UnicodeDecodeError:
        return text, f"{path}: not UTF-8 text"
    except RecursionError:
        return text, f"{path}: not TOML (nested too deeply)"
    except (tomllib.TOMLDecodeError, VaelabError, TypeError, ValueError) as e:
        return text, f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return text, None

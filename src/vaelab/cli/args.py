"""Argument types shared by the commands: they reject bad values with a one-line message."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def _number(cast: Callable[[str], float], minimum: float, inclusive: bool) -> Callable[[str], float]:
    kind = "whole number" if cast is int else "number"
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = kind  # argparse names the type in its messages
    return parse


positive_int = _number(int, 1, inclusive=True)
non_negative_int = _number(int, 0, inclusive=True)
positive_float = _number(float, 0, inclusive=False)
non_negative_float = _number(float, 0, inclusive=True)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="dataset root (default: $VAELAB_DATA_DIR, else the user cache dir)")

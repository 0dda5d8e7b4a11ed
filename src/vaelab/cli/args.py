"""Argument types shared by the commands: they reject bad values with a one-line message."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

from .. import checks
from ..errors import VaelabError
from ..models.expost import EXPOST_N


def _parser(cast: Callable[[str], object], check: Callable[[object], object]) -> Callable[[str], object]:
    """An argparse type: `cast` the text, then apply the range rule of `vaelab.checks` that configs and the API use."""
    kind = "whole number" if cast is int else "number"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind}, got {text!r}") from None
        try:
            return check(value)
        except VaelabError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = kind  # argparse names the type in its messages
    return parse


positive_int = _parser(int, functools.partial(checks.whole, None, low=1))
non_negative_int = _parser(int, functools.partial(checks.whole, None, low=0))
positive_float = _parser(float, functools.partial(checks.real, None, low=0, low_open=True))
non_negative_float = _parser(float, functools.partial(checks.real, None, low=0))
seed = _parser(int, functools.partial(checks.seed, None))
latent_range = _parser(float, functools.partial(checks.latent_range, None))
_one_temperature = _parser(float, functools.partial(checks.temperature, None))


def temperature(text: str) -> float | tuple[float, ...]:
    """One temperature, or several comma-separated ones: a hierarchy's groups, top first."""
    values = tuple(_one_temperature(part) for part in text.split(","))
    return values[0] if len(values) == 1 else values


temperature.__name__ = "temperature"
ema_decay = _parser(float, functools.partial(checks.decay, None))


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", metavar="DIR", help="dataset root (default: $VAELAB_DATA_DIR, else the user cache dir)"
    )


def add_expost(parser: argparse.ArgumentParser) -> None:
    """`--expost-levels L` and `--expost-n N`: the top groups from a Gaussian fitted to the posterior means of
    the run's training images (`vaelab.models.expost`)."""
    parser.add_argument(
        "--expost-levels",
        type=positive_int,
        metavar="L",
        help="draw the top latent groups, down to L resolutions (1 for a single latent), from a Gaussian "
        "fitted to their posterior means on training images (ex-post density estimation) instead of the prior",
    )
    parser.add_argument(
        "--expost-n",
        type=positive_int,
        default=EXPOST_N,
        metavar="N",
        help=f"training images the Gaussian is fitted to (default {EXPOST_N:,}, at most the split)",
    )


def add_weights(parser: argparse.ArgumentParser) -> None:
    """`--weights ema|raw`, for the commands that load a trained model (`vaelab.api.load`)."""
    parser.add_argument(
        "--weights",
        choices=["ema", "raw"],
        default="ema",
        help="ema (default): the moving average of the weights where the run kept one (train --ema), "
        "else the weights; raw: the weights themselves",
    )

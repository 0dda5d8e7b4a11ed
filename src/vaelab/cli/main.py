"""`vaelab <command>`: argparse, one module per group of commands, user errors as one line + exit 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import torch

from ..errors import TrainingStopped, VaelabError
from ..files import describe_os_error
from ..plugins import import_plugin
from ..version import __version__
from . import anomaly, compare, evaluate, explore, info, io, plot, report, train, use

# each adds its subparsers and sets `func`
COMMANDS = [train, use, io, evaluate, compare, plot, report, anomaly, explore, info]


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage + error over two lines; we print one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vaelab", description="Variational autoencoders on images: train, measure, show, use.")
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for module in COMMANDS:
        module.add_parsers(sub)
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE", help=IMPORT_HELP)
    for command in {id(p): p for p in sub.choices.values()}.values():  # after the command too: `vaelab sample --import`
        command.add_argument(
            "--import", dest="command_imports", action="append", default=[], metavar="MODULE", help=IMPORT_HELP
        )
    return parser


IMPORT_HELP = (
    "import MODULE first (repeatable): a plugin that registers encoders, decoders or other parts "
    "(docs/guide.md, Plugins); found on PYTHONPATH, installed, or in the current folder"
)


def _import_plugins(modules: list[str]) -> None:
    """`--import`: each module before the command runs, so the parts it registers are known. Modules are found
    as `python -m vaelab` finds them, the current folder included (last), for the ones a run recorded too."""
    with contextlib.suppress(OSError):  # a current folder that no longer exists
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
    for module in modules:
        import_plugin(module)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _import_plugins(args.imports + args.command_imports)
        return args.func(args) or 0
    except TrainingStopped as e:
        print(f"vaelab: {e}", file=sys.stderr)
        return e.exit_code
    except VaelabError as e:
        print(f"vaelab: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vaelab ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # the operating system's errors are the user's: a full disk, a read-only folder, ...
        print(f"vaelab: error: {args.command}: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            f"vaelab: error: {args.command}: out of memory; ask for less at once (a smaller -n, --batch-size or "
            f"--chunk)",
            file=sys.stderr,
        )
        return 2
    except torch.OutOfMemoryError:
        print(
            "vaelab: error: out of GPU memory; lower --batch-size (or --chunk for evaluate and anomaly)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("vaelab: interrupted", file=sys.stderr)
        return 130

"""`python -m benchmarks [NAME [ARGS...]]`: every benchmark in turn, or one of them with its own arguments.

    python -m benchmarks                        # train, evaluate, data, scaling, threads, blocks, explore
                                                # (+ time_to_quality with real MNIST)
    python -m benchmarks train --cases cvae2:32 --reference PYTHON_WITH_TF
    python -m benchmarks time_to_quality --reference PYTHON_WITH_TF

Each prints its own table; see each module's docstring (`python -m benchmarks.NAME --help`).
Timings on a shared machine drift: compare cases within one run, not across runs.
"""

from __future__ import annotations

import importlib
import os
import sys

NAMES = ["train", "evaluate", "data", "scaling", "threads", "blocks", "explore", "time_to_quality"]


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv:
        name, rest = argv[0], argv[1:]
        if name not in NAMES:
            print(f"unknown benchmark {name!r} (known: {', '.join(NAMES)})", file=sys.stderr)
            return 2
        return importlib.import_module(f"benchmarks.{name}").main(rest) or 0
    names = NAMES if os.environ.get("VAELAB_DATA_DIR") else NAMES[:-1]
    for name in names:
        print(f"\n== benchmarks.{name}", flush=True)
        code = importlib.import_module(f"benchmarks.{name}").main([])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

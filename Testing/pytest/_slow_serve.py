"""`textseg serve` whose model takes DELAY seconds longer to load (tests and benchmarks only).

Run as the engine process's interpreter through the wrapper :func:`_gui_ticks.slow_python`::

    python _slow_serve.py DELAY [SERVE OPTION ...] -- -m TextSegLib.cli.main serve --host ...

The delay is added inside ``load_engine``, i.e. after ``textseg serve`` has bound its port
and before uvicorn serves it: the slowest kind of start for a client, whose connection is
accepted into the backlog and then waits for an answer (a large model loading from disk).
Nothing here is on a production path.
"""
from __future__ import annotations

import sys
import time


def main() -> None:
    args = sys.argv[1:]
    delay, rest = float(args[0]), args[1:]
    cut = rest.index("--")
    extra, command = rest[:cut], rest[cut + 1:]
    if command[:2] == ["-m", "TextSegLib.cli.main"]:
        command = command[2:]
    from TextSegLib.models import catalog

    original = catalog.load_engine

    def slow_load(*a, **kw):
        time.sleep(delay)
        return original(*a, **kw)

    catalog.load_engine = slow_load
    from TextSegLib.cli.main import main as cli

    sys.argv = ["textseg"] + command + extra
    sys.exit(cli())


if __name__ == "__main__":
    main()

"""The ``rnnlab`` command's entry point: the console script and ``python -m rnnlab``.

Importing the command (torch, the tools, the subcommands) takes seconds, before the
command's own interrupt handling exists (:mod:`rnnlab.cli`). This module imports nothing
heavy itself (``import rnnlab`` is lazy), so Ctrl-C during that start-up ends the same
way as anywhere later: one line and exit status 130, no traceback.
"""

import sys
from importlib import import_module

INTERRUPTED = 130  # 128 + SIGINT, what the command exits with after any Ctrl-C


def main() -> None:
    try:
        cli = import_module("rnnlab.cli")
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    cli.main(prog_name="rnnlab")


if __name__ == "__main__":
    main()

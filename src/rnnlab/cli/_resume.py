"""The command that continues an interrupted ``rnnlab train``/``compare`` run."""

from __future__ import annotations

import shlex
from pathlib import Path

# Options dropped from the original command line: the hint names the folder itself, asks
# for --resume, and must never carry --force (which would start the run over).
_WITH_VALUE = ("--out", "--name")
_RESUME_VALUES = ("yes", "auto", "no")


def resume_command(prog: str, argv: list[str], run_dir: Path) -> str:
    """``argv`` (the arguments after the program name) turned into the resuming command."""
    kept, skip_next = [], False
    for k, arg in enumerate(argv):
        if skip_next:
            skip_next = False
            continue
        name = arg.split("=", 1)[0]
        if arg == "--force" or name in _WITH_VALUE or name == "--resume":
            has_value = "=" in arg or (
                name in _WITH_VALUE
                or (k + 1 < len(argv) and argv[k + 1] in _RESUME_VALUES)
            )
            skip_next = has_value and "=" not in arg and arg != "--force"
            continue
        kept.append(arg)
    return shlex.join([prog, *kept, "--out", str(run_dir), "--resume"])

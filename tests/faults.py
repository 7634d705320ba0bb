"""Fault injection for the tests, from outside the library: ``rnnlab`` with a planned kill.

    python tests/faults.py --kill-at-step N [--kill-rank R] train|compare ARGS...

runs the ``rnnlab`` command with ARGS and SIGKILLs the process during step N — after the
step's update, before anything of it is written (it wraps the per-step replica check of
:class:`rnnlab.training.distributed.World`, which the loop calls on every rank). Under
torchrun it fires on the first attempt only (the restarted job runs on), and with
``--kill-rank`` only on that rank.
"""

import os
import signal
import sys

from rnnlab.cli import main
from rnnlab.training.distributed import World, restart_count


def _take(args: list[str], flag: str) -> int | None:
    if flag not in args:
        return None
    k = args.index(flag)
    value = int(args[k + 1])
    del args[k : k + 2]
    return value


def run(args: list[str]) -> None:
    step, rank = _take(args, "--kill-at-step"), _take(args, "--kill-rank")
    check = World.check_replicas

    def check_then_die(self, model, done_step):
        check(self, model, done_step)
        if done_step == step and restart_count() == 0 and rank in (None, self.rank):
            os.kill(os.getpid(), signal.SIGKILL)

    World.check_replicas = check_then_die
    main(args, prog_name="rnnlab")


if __name__ == "__main__":
    run(sys.argv[1:])

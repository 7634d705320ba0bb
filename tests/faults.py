"""Fault injection for the tests, from outside the library: ``rnnlab`` with a planned kill.

    python tests/faults.py [--kill-at-step N] [--kill-rank R] [--kill-before-rename N]
                           train|compare ARGS...

runs the ``rnnlab`` command with ARGS and SIGKILLs the process

- with ``--kill-at-step N``: during step N — after the step's update, before anything of
  it is written (it wraps the per-step replica check of
  :class:`rnnlab.training.distributed.World`, which the loop calls on every rank);
- with ``--kill-before-rename N``: while saving checkpoint N, once its temporary folder is
  complete and synced, before it is renamed into place (it wraps the checkpoint module's
  ``fsync_dir``, called on that folder just before the rename).

Under torchrun a kill fires on the first attempt only (the restarted job runs on), and
with ``--kill-rank`` only on that rank.
"""

import os
import signal
import sys
from pathlib import Path

from rnnlab.cli import main
from rnnlab.training import checkpoint
from rnnlab.training.distributed import World, restart_count


def _take(args: list[str], flag: str) -> int | None:
    if flag not in args:
        return None
    k = args.index(flag)
    value = int(args[k + 1])
    del args[k : k + 2]
    return value


def _die(rank: int | None) -> None:
    if restart_count() == 0 and rank in (None, int(os.environ.get("RANK", "0"))):
        os.kill(os.getpid(), signal.SIGKILL)


def run(args: list[str]) -> None:
    step, rank = _take(args, "--kill-at-step"), _take(args, "--kill-rank")
    before_rename = _take(args, "--kill-before-rename")
    check, sync = World.check_replicas, checkpoint.fsync_dir

    def check_then_die(self, model, done_step):
        check(self, model, done_step)
        if done_step == step:
            _die(rank)

    def sync_then_die(path):
        sync(path)
        if before_rename is not None and Path(path).name == f".tmp-step-{before_rename:08d}":
            _die(rank)

    World.check_replicas = check_then_die
    checkpoint.fsync_dir = sync_then_die
    main(args, prog_name="rnnlab")


if __name__ == "__main__":
    run(sys.argv[1:])

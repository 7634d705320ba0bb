"""The CPU thread policy of a training call, shared by the CLI and the Python API.

Small recurrences run faster on one thread than on many (the per-step work is too small
to split), so unless ``threads`` is given a task whose default width is under 128 trains
on one thread and the others keep torch's choice. The thread count also shapes the
rounding of some reductions, which is why the CLI and the API must agree on it to give
the same numbers. torch's process-wide setting is restored when the call returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from rnnlab._io import InputError
from rnnlab.tasks import TASKS

SMALL_WIDTH = 128  # tasks whose default width is below this train on one thread


def default_threads(task: str) -> int | None:
    """The thread count a task trains with when none is given (None: torch's choice)."""
    cls = TASKS.get(task)
    return 1 if cls is not None and cls.default_hidden < SMALL_WIDTH else None


@contextmanager
def thread_policy(task: str, threads: int | None = None) -> Iterator[int]:
    """Run the body with ``threads`` CPU threads (default: :func:`default_threads`)."""
    if threads is not None and (
        not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
    ):
        raise InputError(f"threads must be an integer >= 1, got {threads!r}")
    before = torch.get_num_threads()
    wanted = threads if threads is not None else default_threads(task)
    if wanted is not None and wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)

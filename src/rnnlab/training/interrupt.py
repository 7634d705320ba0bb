"""Stopping a training run on SIGINT or SIGTERM at the end of a step, with a checkpoint.

While :class:`StopSignals` is entered, a first SIGINT (Ctrl-C) or SIGTERM only records
the signal; the training loop sees it after the step in progress, writes a checkpoint of
that step and raises :class:`TrainingInterrupted`, from which ``--resume`` continues to
the weights an uninterrupted run reaches. A second signal raises at once (the last
checkpoint stays the newest intact one). The previous handlers are restored on exit, so
nothing outlives the training call.

Handlers are installed only in the main thread of a single training process. Under
torchrun with several ranks a rank may be blocked in a collective when its agent sends
SIGTERM (a Python handler would then wait for the agent's SIGKILL), so the ranks keep
the default dispositions and end at once; the job resumes from its last periodic
checkpoint.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by a signal. ``step`` is the step of its newest checkpoint, or None
    when the second signal struck before one was written."""

    def __init__(self, signum: int, run_dir: Path, step: int | None):
        self.signum, self.run_dir, self.step = signum, Path(run_dir), step
        name = signal.Signals(signum).name
        saved = f"checkpoint of step {step} saved" if step is not None else "no new checkpoint"
        super().__init__(f"{name}: training stopped in {str(run_dir)!r} ({saved})")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


class StopSignals:
    """Record SIGINT/SIGTERM while entered (see the module docstring)."""

    def __init__(self, run_dir: Path, *, enabled: bool = True):
        self.run_dir = run_dir
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # asked twice: stop now
            raise TrainingInterrupted(signum, self.run_dir, None)
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if self.enabled:
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():  # None: a handler not set from Python
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

"""What ``rnnlab tasks`` prints: every task's description, options and defaults.

Generated from the tasks' own definitions — the module docstring, the ``Options``
fields (default and help) and ``Task.train_defaults`` — so it cannot drift from them.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import textwrap

from rnnlab.tasks.base import Task
from rnnlab.tasks.datasets import describe_datasets

# The training settings a task may change, in the order they are shown.
_TRAINING = ("steps", "batch_size", "lr", "schedule", "bptt", "eval_every", "checkpoint_every",
             "clip")


def _text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "(none)"
    return str(value)


def option_rows(task: type[Task]) -> list[tuple[str, str, str]]:
    """(KEY, default, meaning) of every ``-o KEY=VALUE`` the task takes."""
    rows = []
    for f in dataclasses.fields(task.Options):
        default = f.default if f.default is not dataclasses.MISSING else None
        rows.append((f.name, _text(default), f.metadata.get("help", "")))
    return rows


def describe(task: type[Task]) -> str:
    """One task: what it is (its module's docstring), its options and training defaults."""
    from rnnlab.training.config import TrainConfig

    doc = inspect.cleandoc(sys.modules[task.__module__].__doc__ or task.name)
    direction = "higher" if task.higher_is_better else "lower"
    lines = [f"{task.name} — metric {task.metric} ({direction} is better), "
             f"baseline: {task.baseline}", textwrap.indent(doc, "  "), "",
             "  options (-o KEY=VALUE; path is also --data FILE):"]
    rows = option_rows(task)
    width = max(len(f"{k}={d}") for k, d, _ in rows)
    for key, default, meaning in rows:
        lines.append(f"    {f'{key}={default}'.ljust(width)}  {meaning}")
    datasets = describe_datasets(task.name)
    if datasets:
        lines += ["  built-in data sets (--data NAME):", *datasets]
    config = TrainConfig.for_task(task.name)
    shown = [(name, getattr(config, name)) for name in _TRAINING
             if name != "bptt" or task.stream]
    flags = " ".join(f"--{n.replace('_', '-')} {_text(v)}" for n, v in shown)
    lines += textwrap.wrap(f"training defaults: --hidden {task.default_hidden} {flags}",
                           width=90, initial_indent="  ", subsequent_indent="    ")
    return "\n".join(lines)


def describe_tasks(names: list[str] | None = None) -> str:
    """Every task (or those named), separated by blank lines."""
    from rnnlab.tasks import TASKS, get_task_class

    chosen = [get_task_class(n) for n in names] if names else [TASKS[n] for n in TASKS]
    return "\n\n".join(describe(t) for t in chosen)

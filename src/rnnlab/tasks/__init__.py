"""Built-in tasks: each a small module with its data, loss, metric and chance level."""

from __future__ import annotations

from rnnlab._io import InputError
from rnnlab.tasks.adding import Adding, AddingOptions
from rnnlab.tasks.base import Task
from rnnlab.tasks.charlm import CharLM, CharLMOptions
from rnnlab.tasks.classify import Classify, ClassifyOptions
from rnnlab.tasks.copy import Copy, CopyOptions
from rnnlab.tasks.forecast import Forecast, ForecastOptions
from rnnlab.tasks.model import CELLS, CLASSIC_CELLS, ModelConfig, SequenceModel, match_hidden
from rnnlab.tasks.parity import Parity, ParityOptions

TASKS: dict[str, type[Task]] = {
    t.name: t for t in (Adding, Copy, CharLM, Forecast, Classify, Parity)
}


def get_task_class(name: str) -> type[Task]:
    """The task class called ``name``."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; expected one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


def get_task(name: str, options: dict | None = None) -> Task:
    """Build the task called ``name`` from its options (a dict of its ``Options`` fields)."""
    return get_task_class(name).from_dict(options)


__all__ = [
    "CELLS",
    "CLASSIC_CELLS",
    "TASKS",
    "Adding",
    "AddingOptions",
    "CharLM",
    "CharLMOptions",
    "Classify",
    "ClassifyOptions",
    "Copy",
    "CopyOptions",
    "Forecast",
    "ForecastOptions",
    "ModelConfig",
    "Parity",
    "ParityOptions",
    "SequenceModel",
    "Task",
    "get_task",
    "get_task_class",
    "match_hidden",
]

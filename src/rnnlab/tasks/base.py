"""What every task provides: data, loss, metric, chance level and a model shape."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, field, fields
from typing import Any, ClassVar

import torch

from rnnlab._io import InputError
from rnnlab.tasks.model import ModelConfig

Batch = dict[str, Any]


class Task(ABC):
    """A learning problem: how to draw a batch, score a model, and what chance scores.

    Subclasses set the class attributes and define ``Options`` (a frozen dataclass
    validated on construction). Training data is drawn per step from a generator the
    loop derives from (seed, step), so any step can be replayed exactly; the validation
    split is fixed when the task is built.
    """

    name: ClassVar[str]
    metric: ClassVar[str]  # the validation metric the loop tracks (e.g. "mse", "bpc")
    higher_is_better: ClassVar[bool] = False
    baseline: ClassVar[str] = "chance"  # what the ``chance`` level is called in reports
    metric_help: ClassVar[str] = ""  # how to read the metric, where its name does not say
    stream: ClassVar[bool] = False  # True: one long stream, truncated BPTT, carried state
    Options: ClassVar[type]
    default_hidden: ClassVar[int] = 64
    # TrainConfig fields this task trains best with (the CLI's defaults for the task).
    train_defaults: ClassVar[dict] = {}

    def __init__(self, options):
        self.options = options

    @classmethod
    def from_dict(cls, d: dict | None) -> Task:
        return cls(cls.options_from_dict(d))

    @classmethod
    def options_from_dict(cls, d: dict | None):
        """The task's validated ``Options`` from a dict of its fields."""
        if d is not None and not isinstance(d, dict):
            raise InputError(f"task options are a JSON object, got {type(d).__name__}")
        d = dict(d or {})
        known = {f.name for f in fields(cls.Options)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(
                f"task {cls.name!r} has no option {unknown[0]!r}; its options are "
                f"{', '.join(sorted(known))}"
            )
        return cls.Options(**d)

    def options_dict(self) -> dict:
        return asdict(self.options)

    # -- what the loop and the report need ---------------------------------------------

    @property
    @abstractmethod
    def chance(self) -> float:
        """The metric of the baseline (``baseline`` names it): the line a model must beat."""

    @property
    def target(self) -> float | None:
        """A level that counts as solved, for the report's 'steps to target' column."""
        return None

    @abstractmethod
    def model_config(self, cell: str, hidden_size: int, **layer_options) -> ModelConfig:
        """The model shape this task needs, for a cell and width."""

    @abstractmethod
    def train_batch(self, step: int, config, generator: torch.Generator) -> Batch:
        """The training batch of ``step`` for a TrainConfig (batch_size, bptt).

        Only ``generator`` may supply randomness. A stream task sets ``batch["reset"]``
        when its columns start over, so the loop drops the carried state.
        """

    def check(self, config) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Raise InputError when the data cannot serve this training configuration."""

    @abstractmethod
    def loss(self, model, batch: Batch, carry=None):
        """Return (scalar training loss, carry for the next step; None for non-stream tasks)."""

    @abstractmethod
    def evaluate(self, model) -> dict[str, float]:
        """Validation scores, always including ``self.metric``."""

    @abstractmethod
    def probe(self) -> Batch:
        """A few validation sequences for gate heatmaps and gradient-norm plots."""

    def artefacts(self) -> dict:
        """JSON-able facts a saved run needs later (vocabulary, normalisation, ...)."""
        return {}

    def probe_marks(self) -> list[tuple[int, str]]:
        """(step, label) of the steps that matter in the first probe sequence, for plots."""
        return []

    def extras(self, model, generator: torch.Generator) -> dict:
        """Task-specific report views (generated text, forecasts); JSON-able."""
        return {}


def option(default, help: str):
    """A field of a task's ``Options``: its default and what it means (``rnnlab tasks``)."""
    return field(default=default, metadata={"help": help})


def positive(name: str, value, *, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def fraction(name: str, value, low: float = 0.0, high: float = 1.0) -> None:
    if not isinstance(value, (int, float)) or not low < value < high:
        raise InputError(f"{name} must be a number in ({low}, {high}), got {value!r}")


def optional_text(name: str, value) -> None:
    if value is not None and not isinstance(value, str):
        raise InputError(f"{name} must be text, got {value!r}")


def text_list(name: str, value) -> tuple[str, ...]:
    """A list of names given as a list, tuple or comma string; each must be text."""
    items = tuple(value.split(",") if isinstance(value, str) else value)
    if not all(isinstance(item, str) for item in items):
        raise InputError(f"{name} must be a list of names, got {value!r}")
    return items

"""The frozen, validated configuration of one training run (saved as ``config.json``)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace

from rnnlab._io import InputError
from rnnlab.tasks import TASKS
from rnnlab.tasks.model import CELLS, check_regularisers, without_unused_regularisers

SCHEDULES = ("constant", "cosine", "linear")


def _int(name: str, value, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _num(name: str, value, low: float = -math.inf, high: float = math.inf, *,
         open_low: bool = False, open_high: bool = False) -> None:
    """A finite number within [low, high] (an open end excludes it); the error names the
    bound that failed."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if value < low or (open_low and value == low):
        raise InputError(f"{name} must be {'>' if open_low else '>='} {low:g}, got {value!r}")
    if value > high or (open_high and value == high):
        raise InputError(f"{name} must be {'<' if open_high else '<='} {high:g}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """One cell trained on one task. Budget: ``steps``, and optionally ``seconds`` of wall time.

    ``hidden=None`` takes the task's default width. ``seconds`` makes a run stop early
    on a slow machine, so only a ``steps`` budget is reproducible bit for bit.
    """

    task: str = "adding"
    task_options: dict = field(default_factory=dict)
    cell: str = "lstm"
    hidden: int | None = None
    layers: int = 1
    dropout: float = 0.0
    bidirectional: bool = False
    forget_bias: float = 1.0
    weight_drop: float = 0.0  # LSTM, GRU (rnnlab.nn.regularise)
    recurrent_dropout: float = 0.0
    zoneout: float = 0.0
    steps: int = 2000
    seconds: float | None = None
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    clip: float = 1.0
    schedule: str = "constant"
    warmup: int = 0
    bptt: int = 100
    eval_every: int = 100
    patience: int | None = None
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.task, str) or not self.task:
            raise InputError(f"task must be a task name, got {self.task!r}")
        if not isinstance(self.task_options, dict):
            raise InputError(f"task_options must be a dict, got {type(self.task_options).__name__}")
        # The JSON form (tuples become lists) so a config equals itself after a save and load.
        object.__setattr__(self, "task_options", json.loads(json.dumps(self.task_options)))
        if self.cell not in CELLS:
            raise InputError(f"unknown cell {self.cell!r}; expected one of {', '.join(CELLS)}")
        if self.hidden is not None:
            _int("hidden", self.hidden, 1)
        _int("layers", self.layers, 1)
        _num("dropout", self.dropout, 0.0, 1.0, open_high=True)
        _num("forget_bias", self.forget_bias)
        for name in ("weight_drop", "recurrent_dropout", "zoneout"):
            _num(name, getattr(self, name), 0.0, 1.0, open_high=True)
        check_regularisers(self.cell, self.weight_drop, self.recurrent_dropout, self.zoneout)
        _int("steps", self.steps, 1)
        if self.seconds is not None:
            _num("seconds", self.seconds, 0.0, open_low=True)
        _int("batch_size", self.batch_size, 1)
        _num("lr", self.lr, 0.0, open_low=True)
        _num("weight_decay", self.weight_decay, 0.0)
        _num("clip", self.clip, 0.0)
        if self.schedule not in SCHEDULES:
            raise InputError(
                f"unknown schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}"
            )
        _int("warmup", self.warmup, 0)
        _int("bptt", self.bptt, 1)
        _int("eval_every", self.eval_every, 1)
        if self.patience is not None:
            _int("patience", self.patience, 1)
        _int("checkpoint_every", self.checkpoint_every, 0)
        _int("seed", self.seed, 0)

    @classmethod
    def for_task(cls, task: str = "adding", **options) -> TrainConfig:
        """The task's own training defaults (``Task.train_defaults``), then ``options``.

        The one source of defaults: ``rnnlab train``/``compare`` and :func:`rnnlab.train`
        and :func:`rnnlab.compare` all start from it.
        """
        if task not in TASKS:
            raise InputError(f"unknown task {task!r}; expected one of {', '.join(sorted(TASKS))}")
        return cls(task=task, **{**TASKS[task].train_defaults, **options})

    def to_dict(self) -> dict:
        """The configuration as JSON types (what a run's ``config.json`` holds)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The configuration :meth:`to_dict` wrote, validated; an unknown option is an
        :class:`~rnnlab._io.InputError`."""
        if not isinstance(d, dict):
            raise InputError(f"a training configuration is a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown training option {unknown[0]!r}")
        return cls(**without_unused_regularisers(d))

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied, validated again."""
        return replace(self, **changes)

    def digest(self) -> str:
        """A short hash of everything that shapes the trained weights (not the budget)."""
        d = self.to_dict()
        for budget in ("steps", "seconds", "patience"):
            d.pop(budget)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def lr_at(self, step: int, elapsed: float | None = None) -> float:
        """Learning rate of ``step`` (1-based): linear warmup, then the schedule's decay.

        With a ``seconds`` budget, pass the ``elapsed`` wall time: the decay then follows
        whichever budget is nearer its end, so a time-limited run still anneals.
        """
        if self.warmup and step <= self.warmup:
            return self.lr * step / self.warmup
        span = max(1, self.steps - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        if self.seconds is not None and elapsed is not None:
            progress = max(progress, min(1.0, elapsed / self.seconds))
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.schedule == "linear":
            return self.lr * (1.0 - progress)
        return self.lr

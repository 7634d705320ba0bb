"""Parity: is the number of ones in a bit string odd? Trained short, scored long.

Training strings have 1 to ``train_length`` random bits (a fresh length per string);
validation strings have ``val_length`` bits, longer than any seen in training, so the
metric measures length generalisation: a cell that tracks the parity state (one flip per
one) stays exact at any length; one that memorised short strings falls to chance.
The answer is read after the last bit. Metric: validation accuracy (also reported:
``accuracy_short``, on strings of ``train_length`` bits); chance: 0.5, the two answers
being equally likely.

A state-tracking problem: nonlinear recurrences (LSTM, GRU) can solve it; recurrences
linear in the state with positive gates cannot at fixed depth (Merrill et al. 2024,
"The Illusion of State in State-Space Models"; Grazzi et al. 2024, "Unlocking State-
Tracking in Linear RNNs Through Negative Eigenvalues").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from rnnlab._io import InputError
from rnnlab.tasks.base import Batch, Task, option, positive
from rnnlab.tasks.model import ModelConfig


@dataclass(frozen=True)
class ParityOptions:
    train_length: int = option(16, "longest training string (each has 1 to this many bits)")
    val_length: int = option(64, "bits of every validation string")
    val_size: int = option(1000, "fixed validation strings")
    val_seed: int = option(12345, "seed of the validation strings")

    def __post_init__(self):
        positive("parity train_length", self.train_length)
        positive("parity val_length", self.val_length)
        positive("parity val_size", self.val_size)
        if self.val_length < self.train_length:
            raise InputError(f"parity val_length ({self.val_length}) must be at least "
                             f"train_length ({self.train_length}): validation scores longer "
                             "strings than training saw")


def parity_batch(n: int, T: int, generator: torch.Generator,
                 lengths: torch.Tensor | None = None) -> Batch:
    """x (n, T, 1) bits (zero after each string's length), y (n,) parity, lengths (n,)."""
    if lengths is None:
        lengths = torch.full((n,), T, dtype=torch.long)
    bits = torch.randint(0, 2, (n, T), generator=generator)
    bits = bits * (torch.arange(T) < lengths[:, None])  # (n, T)
    return {"x": bits.float()[..., None], "y": bits.sum(1) % 2, "lengths": lengths}


class Parity(Task):
    name = "parity"
    metric = "accuracy"
    higher_is_better = True
    Options = ParityOptions
    default_hidden = 32
    train_defaults: ClassVar[dict] = {"steps": 2000, "batch_size": 64, "lr": 3e-3,
                                      "eval_every": 100}

    def __init__(self, options: ParityOptions):
        super().__init__(options)
        g = torch.Generator().manual_seed(options.val_seed)
        self.val = parity_batch(options.val_size, options.val_length, g)
        self.val_short = parity_batch(options.val_size, options.train_length, g)

    @property
    def chance(self) -> float:
        return 0.5

    @property
    def target(self) -> float:
        return 0.95

    def model_config(self, cell: str, hidden_size: int, **layer_options) -> ModelConfig:
        return ModelConfig(cell, 1, hidden_size, 2, readout="last", **layer_options)

    def train_batch(self, step: int, config, generator: torch.Generator) -> Batch:
        n, T = config.batch_size, self.options.train_length
        lengths = torch.randint(1, T + 1, (n,), generator=generator)
        return parity_batch(n, T, generator, lengths)

    def loss(self, model, batch: Batch, carry=None):
        logits, _ = model(batch["x"], lengths=batch["lengths"])
        return F.cross_entropy(logits, batch["y"]), None

    def _accuracy(self, model, batch: Batch) -> float:
        logits, _ = model(batch["x"], lengths=batch["lengths"])
        return float((logits.argmax(-1) == batch["y"]).float().mean())

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        return {"accuracy": self._accuracy(model, self.val),
                "accuracy_short": self._accuracy(model, self.val_short)}

    def probe(self) -> Batch:
        return {k: v[:8] for k, v in self.val.items()}

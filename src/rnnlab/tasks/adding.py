"""The adding problem (Hochreiter & Schmidhuber, 1997).

Each step carries two numbers: a value v_t ~ U(0, 1) and a marker m_t ∈ {0, 1}. Exactly
two markers are set, one in the first half of the sequence and one in the second; the
target is the sum of the two marked values, read out after the last step. Predicting
the mean (1.0) scores MSE = Var(v_a + v_b) = 2/12 ≈ 0.167, the chance level; a model
must carry the first marked value across up to T steps to beat it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rnnlab.tasks.base import Batch, Task, option, positive
from rnnlab.tasks.model import ModelConfig


@dataclass(frozen=True)
class AddingOptions:
    length: int = option(60, "T, time steps per sequence")
    val_size: int = option(1000, "fixed validation sequences")
    val_seed: int = option(12345, "seed of the validation sequences")

    def __post_init__(self):
        positive("adding length", self.length, minimum=2)
        positive("adding val_size", self.val_size)


def adding_batch(n: int, T: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return x (n, T, 2) and y (n, 1)."""
    v = torch.rand(n, T, generator=generator)  # (n, T)
    a = torch.randint(0, T // 2, (n,), generator=generator)
    b = torch.randint(T // 2, T, (n,), generator=generator)
    m = torch.zeros(n, T)
    rows = torch.arange(n)
    m[rows, a] = 1.0
    m[rows, b] = 1.0
    x = torch.stack([v, m], dim=-1)  # (n, T, 2)
    y = (v * m).sum(dim=1, keepdim=True)  # (n, 1)
    return x, y


class Adding(Task):
    name = "adding"
    metric = "mse"
    Options = AddingOptions
    train_defaults: ClassVar[dict] = {
        "steps": 2500, "batch_size": 64, "lr": 3e-3, "eval_every": 100,
    }

    def __init__(self, options: AddingOptions):
        super().__init__(options)
        g = torch.Generator().manual_seed(options.val_seed)
        self.val_x, self.val_y = adding_batch(options.val_size, options.length, g)

    @property
    def chance(self) -> float:
        return 2.0 / 12.0

    @property
    def target(self) -> float:
        return 0.1 * self.chance

    def model_config(self, cell: str, hidden_size: int, **layer_options) -> ModelConfig:
        return ModelConfig(cell, 2, hidden_size, 1, readout="last", **layer_options)

    def train_batch(self, step: int, config, generator: torch.Generator) -> Batch:
        x, y = adding_batch(config.batch_size, self.options.length, generator)
        return {"x": x, "y": y}

    def loss(self, model, batch: Batch, carry=None):
        pred, _ = model(batch["x"])
        return torch.mean((pred - batch["y"]) ** 2), None

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        pred, _ = model(self.val_x)
        return {"mse": float(torch.mean((pred - self.val_y) ** 2))}

    def probe(self) -> Batch:
        return {"x": self.val_x[:8], "y": self.val_y[:8]}

    def probe_marks(self) -> list[tuple[int, str]]:
        x = self.probe()["x"][0]  # (T, 2): value, marker
        steps = torch.nonzero(x[:, 1]).flatten().tolist()
        return [(t, f"marked: {float(x[t, 0]):.2f}") for t in steps]

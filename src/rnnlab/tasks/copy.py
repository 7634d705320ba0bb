"""The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

Input: S random symbols from an alphabet of K, then ``delay`` − 1 blanks, a delimiter,
and S more blanks. Target: blanks for the first S + ``delay`` steps, then the S symbols
in order. Token ids: 0 blank, 1..K symbols, K + 1 delimiter; classes: 0 blank, 1..K.

The memoryless baseline outputs blanks until the delimiter and a uniform guess after,
scoring S·ln K / (delay + 2S) nats per step: the chance level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from rnnlab.tasks.base import Batch, Task, option, positive
from rnnlab.tasks.model import ModelConfig


@dataclass(frozen=True)
class CopyOptions:
    delay: int = option(50, "blanks between the last symbol and the recall")
    symbols: int = option(8, "alphabet size K")
    seq_len: int = option(10, "symbols to remember, S")
    embed_dim: int = option(16, "width of the token embedding")
    val_size: int = option(500, "fixed validation sequences")
    val_seed: int = option(12345, "seed of the validation sequences")

    def __post_init__(self):
        positive("copy delay", self.delay)
        positive("copy symbols", self.symbols, minimum=2)
        positive("copy seq_len", self.seq_len)
        positive("copy embed_dim", self.embed_dim)
        positive("copy val_size", self.val_size)


def copy_batch(n: int, o: CopyOptions, generator: torch.Generator):
    """Return tokens x (n, T') and targets y (n, T') with T' = delay + 2·seq_len."""
    S, K, T = o.seq_len, o.symbols, o.delay + 2 * o.seq_len
    seq = torch.randint(1, K + 1, (n, S), generator=generator)  # (n, S)
    x = torch.zeros(n, T, dtype=torch.long)
    x[:, :S] = seq
    x[:, S + o.delay - 1] = K + 1  # delimiter: "recall now"
    y = torch.zeros(n, T, dtype=torch.long)
    y[:, -S:] = seq
    return x, y


class Copy(Task):
    name = "copy"
    metric = "xent"
    Options = CopyOptions
    train_defaults: ClassVar[dict] = {
        "steps": 2000, "batch_size": 64, "lr": 3e-3, "eval_every": 100,
    }

    def __init__(self, options: CopyOptions):
        super().__init__(options)
        g = torch.Generator().manual_seed(options.val_seed)
        self.val_x, self.val_y = copy_batch(options.val_size, options, g)

    @property
    def chance(self) -> float:
        o = self.options
        return o.seq_len * math.log(o.symbols) / (o.delay + 2 * o.seq_len)

    @property
    def target(self) -> float:
        return 0.1 * self.chance

    def model_config(self, cell: str, hidden_size: int, **layer_options) -> ModelConfig:
        o = self.options
        return ModelConfig(
            cell, o.symbols + 2, hidden_size, o.symbols + 1,
            embed_dim=o.embed_dim, readout="all", **layer_options,
        )

    def train_batch(self, step: int, config, generator: torch.Generator) -> Batch:
        x, y = copy_batch(config.batch_size, self.options, generator)
        return {"x": x, "y": y}

    def loss(self, model, batch: Batch, carry=None):
        logits, _ = model(batch["x"])  # (B, T', K+1)
        return F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten()), None

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        logits, _ = model(self.val_x)
        xent = F.cross_entropy(logits.flatten(0, 1), self.val_y.flatten())
        S = self.options.seq_len
        recalled = logits[:, -S:].argmax(-1) == self.val_y[:, -S:]
        return {"xent": float(xent), "recall_accuracy": float(recalled.float().mean())}

    def probe(self) -> Batch:
        return {"x": self.val_x[:8], "y": self.val_y[:8]}

    def probe_marks(self) -> list[tuple[int, str]]:
        o = self.options
        return [(0, "symbols"), (o.seq_len + o.delay - 1, "recall cue")]

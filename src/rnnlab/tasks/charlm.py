"""Character-level language modelling with truncated BPTT over a carried state.

The text (a user's file, or with none the Python standard library's own ``*.py``
sources read in sorted order) is split chronologically: the last ``val_fraction`` is
held out. Training cuts the rest into ``batch_size`` contiguous columns; step s reads
the next ``bptt`` characters of every column, and the hidden state of each column is
carried from one step to the next (detached), reset when the columns start over.

Metric: bits per character on the held-out text. Chance: the cross-entropy of the
training text's unigram distribution on it (a model that ignores context).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from rnnlab._io import InputError, read_text
from rnnlab.tasks.base import Batch, Task, fraction, option, optional_text, positive
from rnnlab.tasks.model import ModelConfig

DEFAULT_CORPUS_CHARS = 1_000_000


def stdlib_corpus(max_chars: int = DEFAULT_CORPUS_CHARS) -> str:
    """The Python standard library's top-level ``*.py`` files, in name order."""
    root = Path(os.__file__).parent
    parts, total = [], 0
    for path in sorted(root.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text)
        total += len(text) + 1
        if total >= max_chars:
            break
    return "\n".join(parts)[:max_chars]


@dataclass(frozen=True)
class CharLMOptions:
    path: str | None = option(
        None, "text file (UTF-8); none: the Python standard library's sources")
    max_chars: int | None = option(None, "cap on the characters used (default corpus: 1 000 000)")
    val_fraction: float = option(0.05, "the held-out tail of the text")
    embed_dim: int = option(64, "width of the character embedding")
    eval_columns: int = option(32, "held-out text is scored in this many contiguous columns")
    probe_length: int = option(120, "characters of the probe sequences (gate and gradient plots)")

    def __post_init__(self):
        optional_text("charlm path", self.path)
        if self.max_chars is not None:
            positive("charlm max_chars", self.max_chars, minimum=100)
        fraction("charlm val_fraction", self.val_fraction, 0.0, 0.5)
        positive("charlm embed_dim", self.embed_dim)
        positive("charlm eval_columns", self.eval_columns)
        positive("charlm probe_length", self.probe_length, minimum=2)


class CharLM(Task):
    name = "charlm"
    metric = "bpc"
    stream = True
    Options = CharLMOptions
    default_hidden = 256
    train_defaults: ClassVar[dict] = {
        "steps": 3000, "batch_size": 32, "bptt": 100, "lr": 3e-3, "schedule": "cosine",
        "eval_every": 250, "checkpoint_every": 500, "clip": 1.0,
    }

    def __init__(self, options: CharLMOptions):
        super().__init__(options)
        if options.path is None:
            text = stdlib_corpus(options.max_chars or DEFAULT_CORPUS_CHARS)
        else:
            text = read_text(options.path)
            if options.max_chars is not None:
                text = text[: options.max_chars]
        n_val = int(len(text) * options.val_fraction)
        if len(text) < 200 or n_val < options.eval_columns + 1:
            raise InputError(
                f"text has {len(text)} characters; charlm needs at least 200, with "
                f"{options.eval_columns + 1} or more in the held-out tail"
            )
        self.vocab = sorted(set(text))
        self.index = {ch: i for i, ch in enumerate(self.vocab)}
        ids = torch.tensor([self.index[ch] for ch in text], dtype=torch.long)
        self.train_ids, self.val_ids = ids[: len(text) - n_val], ids[len(text) - n_val:]
        counts = Counter(text[: len(text) - n_val])
        total = len(text) - n_val + len(self.vocab)  # add-one smoothing
        self._chance = -sum(
            math.log2((counts[text[j]] + 1) / total) for j in range(len(text) - n_val, len(text))
        ) / n_val

    @property
    def chance(self) -> float:
        return self._chance

    def model_config(self, cell: str, hidden_size: int, **layer_options) -> ModelConfig:
        V = len(self.vocab)
        return ModelConfig(cell, V, hidden_size, V, embed_dim=self.options.embed_dim,
                           readout="all", **layer_options)

    def _columns(self, batch_size: int) -> torch.Tensor:
        n = len(self.train_ids) // batch_size
        return self.train_ids[: n * batch_size].view(batch_size, n)  # (B, n)

    def check(self, config) -> None:
        need = config.batch_size * (config.bptt + 1)
        if len(self.train_ids) < need:
            raise InputError(
                f"the training text has {len(self.train_ids)} characters; batch_size "
                f"{config.batch_size} × (bptt {config.bptt} + 1) needs at least {need}"
            )

    def train_batch(self, step: int, config, generator: torch.Generator) -> Batch:
        cols = self._columns(config.batch_size)
        chunks = (cols.shape[1] - 1) // config.bptt
        k = (step - 1) % chunks
        start = k * config.bptt
        x = cols[:, start : start + config.bptt]  # (B, bptt)
        y = cols[:, start + 1 : start + config.bptt + 1]
        return {"x": x, "y": y, "reset": k == 0}

    def loss(self, model, batch: Batch, carry=None):
        logits, carry = model(batch["x"], carry)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten()), carry

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        C = self.options.eval_columns
        n = (len(self.val_ids) - 1) // C
        x = self.val_ids[: n * C].view(C, n)
        y = self.val_ids[1 : n * C + 1].view(C, n)
        total, carry = 0.0, None
        for start in range(0, n, 256):
            logits, carry = model(x[:, start : start + 256], carry)
            total += float(F.cross_entropy(logits.flatten(0, 1), y[:, start : start + 256]
                                           .flatten(), reduction="sum"))
        return {"bpc": total / (n * C) / math.log(2)}

    def probe(self) -> Batch:
        L = min(self.options.probe_length, (len(self.val_ids) - 1) // 4)
        x = torch.stack([self.val_ids[j * L : (j + 1) * L] for j in range(4)])
        y = torch.stack([self.val_ids[j * L + 1 : (j + 1) * L + 1] for j in range(4)])
        return {"x": x, "y": y}

    def artefacts(self) -> dict:
        return {"vocab": "".join(self.vocab)}

    def extras(self, model, generator: torch.Generator) -> dict:
        prime = "".join(self.vocab[i] for i in self.val_ids[:40].tolist())
        text = sample(model, self.vocab, prime, 400, 0.8, generator)
        return {"generated text (prime from held-out text, temperature 0.8)": text}


@torch.no_grad()
def sample(model, vocab: list[str] | str, prime: str, length: int, temperature: float,
           generator: torch.Generator) -> str:
    """Continue ``prime`` by ``length`` characters drawn at ``temperature``."""
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    if length < 0:
        raise InputError(f"length must be >= 0, got {length}")
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted({ch for ch in prime if ch not in index})
    if unknown:
        raise InputError(
            f"the prime uses characters the model never saw: {''.join(unknown)!r}"
        )
    model.eval()
    ids = [index[ch] for ch in prime] or [index.get("\n", 0)]
    logits, carry = model(torch.tensor([ids]))
    out = []
    for _ in range(length):
        probs = torch.softmax(logits[0, -1] / temperature, dim=-1)
        nxt = int(torch.multinomial(probs, 1, generator=generator))
        out.append(vocab[nxt])
        logits, carry = model(torch.tensor([[nxt]]), carry)
    return prime + "".join(out)

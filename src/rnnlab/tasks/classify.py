"""Sequence classification from a CSV or NPZ file (or a generated waveform set).

Accepted layouts:

* wide CSV — one sequence per row: a label column, every other chosen column one
  time step of a single feature;
* long CSV — one time step per row: an ``id`` column groups rows into sequences (in
  file order, lengths may differ), the chosen columns are the features, and the
  label is constant within an id;
* NPZ — arrays ``x`` (N, T) or (N, T, F), ``y`` (N,), optionally ``lengths`` (N,).

Sequences are split at random (seeded) into train and validation; features are
normalised with training statistics. Metric: accuracy; chance: always answering the
training majority class.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from rnnlab._io import InputError, column_index, numeric_columns, read_csv, readable_file
from rnnlab.tasks.base import (
    Batch,
    Task,
    fraction,
    option,
    optional_text,
    positive,
    text_list,
)
from rnnlab.tasks.datasets import builtin
from rnnlab.tasks.model import ModelConfig


@dataclass(frozen=True)
class ClassifyOptions:
    path: str | None = option(
        None, "CSV or NPZ file, or a built-in data set's name (below); none: generated "
              "sine/square/sawtooth waves")
    label: str = option("label", "label column (CSV)")
    id: str | None = option(
        None, "id column: a long CSV, one row per time step (none: a wide CSV, one row "
              "per sequence)")
    columns: tuple = option((), "feature columns, comma-separated (default: all but label and id)")
    val_fraction: float = option(0.2, "sequences held out for validation (a seeded random split)")
    split_seed: int = option(0, "seed of the train/validation split")
    samples: int = option(600, "generated data: sequences")
    length: int = option(60, "generated data: steps per sequence")

    def __post_init__(self):
        optional_text("classify path", self.path)
        optional_text("classify id", self.id)
        if not isinstance(self.label, str):
            raise InputError(f"classify label must be a column name, got {self.label!r}")
        object.__setattr__(self, "columns", text_list("classify columns", self.columns))
        fraction("classify val_fraction", self.val_fraction, 0.0, 1.0)
        positive("classify samples", self.samples, minimum=10)
        positive("classify length", self.length, minimum=2)


def waveforms(n: int, T: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Noisy sine, square and sawtooth waves of random frequency and phase."""
    rng = np.random.default_rng(seed)
    kinds = ["sine", "square", "sawtooth"]
    xs, ys = [], []
    t = np.arange(T)
    for j in range(n):
        kind = kinds[j % 3]
        phase = rng.uniform(0, 1) + t * rng.uniform(0.02, 0.08)  # cycles
        if kind == "sine":
            wave = np.sin(2 * np.pi * phase)
        elif kind == "square":
            wave = np.sign(np.sin(2 * np.pi * phase))
        else:
            wave = 2 * (phase % 1.0) - 1
        xs.append((wave + rng.normal(0, 0.3, T))[:, None])
        ys.append(kind)
    return xs, ys


def _from_npz(path: str) -> tuple[list[np.ndarray], list[str]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read NPZ file {path!r}: {err}") from err
    for key in ("x", "y"):
        if key not in arrays:
            raise InputError(f"NPZ file {path!r} has no array {key!r}; it has "
                             f"{', '.join(sorted(arrays)) or 'none'}")
    x, y = arrays["x"], arrays["y"]
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise InputError(f"NPZ file {path!r}: expected x (N, T[, F]) and y (N,), got x "
                         f"{x.shape} and y {y.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise InputError(f"NPZ file {path!r}: x must be numeric, got {x.dtype}")
    lengths = arrays.get("lengths", np.full(len(x), x.shape[1]))
    if lengths.shape != (len(x),) or lengths.min() < 1 or lengths.max() > x.shape[1]:
        raise InputError(f"NPZ file {path!r}: lengths must be (N,) integers in 1..{x.shape[1]}")
    xs = [x[i, : int(lengths[i])].astype(np.float64) for i in range(len(x))]
    for i, seq in enumerate(xs):
        if not np.isfinite(seq).all():
            raise InputError(f"NPZ file {path!r}: sequence {i} of x holds NaN or infinity; "
                             "expected finite numbers")
    return xs, [str(v) for v in y.tolist()]


def _from_csv(o: ClassifyOptions) -> tuple[list[np.ndarray], list[str]]:
    header, rows = read_csv(o.path)
    li = column_index(header, o.label, o.path)
    skip = {o.label} | ({o.id} if o.id else set())
    names = list(o.columns) or [h for h in header if h not in skip]
    if not names:
        raise InputError(f"{o.path!r} has no feature columns besides {o.label!r}")
    values = numeric_columns(header, rows, names, o.path)  # (rows, columns)
    labels = [row[li].strip() for row in rows]
    if o.id is None:
        return [v[:, None] for v in values], labels  # wide: one row, one sequence
    ii = column_index(header, o.id, o.path)
    groups: dict[str, list[int]] = {}
    for r, row in enumerate(rows):
        groups.setdefault(row[ii].strip(), []).append(r)
    xs, ys = [], []
    for key, idx in groups.items():
        kinds = {labels[r] for r in idx}
        if len(kinds) > 1:
            raise InputError(f"sequence {key!r} of {o.path!r} has several labels "
                             f"({', '.join(sorted(kinds))}); expected one per id")
        xs.append(values[idx])
        ys.append(labels[idx[0]])
    return xs, ys


class Classify(Task):
    name = "classify"
    metric = "accuracy"
    higher_is_better = True
    Options = ClassifyOptions
    train_defaults: ClassVar[dict] = {"steps": 1000, "batch_size": 32, "lr": 3e-3, "eval_every": 50}

    def __init__(self, options: ClassifyOptions):
        super().__init__(options)
        dataset = builtin(options.path, "classify")
        if dataset is not None:
            xs, ys = dataset.load()
        elif options.path is None:
            xs, ys = waveforms(options.samples, options.length)
        elif Path(options.path).suffix.lower() == ".npz":
            readable_file(options.path, "NPZ file")
            xs, ys = _from_npz(options.path)
        else:
            xs, ys = _from_csv(options)
        self.classes = sorted(set(ys))
        if len(self.classes) < 2:
            raise InputError(
                f"the label column has a single class ({self.classes[0]!r}); classification "
                "needs at least two"
            )
        if any(len(x) == 0 for x in xs):
            raise InputError("a sequence has no time steps")
        if len(xs) < 4:
            raise InputError(f"{len(xs)} sequences are too few; need at least 4")
        perm = np.random.default_rng(options.split_seed).permutation(len(xs))
        n_val = max(1, round(len(xs) * options.val_fraction))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        stacked = np.concatenate([xs[i] for i in train_idx])
        self.mean = stacked.mean(axis=0)
        std = stacked.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        label_id = {c: k for k, c in enumerate(self.classes)}
        self.train = self._pack([xs[i] for i in train_idx], [label_id[ys[i]] for i in train_idx])
        self.val = self._pack([xs[i] for i in val_idx], [label_id[ys[i]] for i in val_idx])
        majority = Counter(self.train["y"].tolist()).most_common(1)[0][0]
        self._chance = float((self.val["y"] == majority).float().mean())
        self.features = stacked.shape[1]

    def _pack(self, xs: list[np.ndarray], ys: list[int]) -> Batch:
        T = max(len(x) for x in xs)
        F_ = xs[0].shape[1]
        x = np.zeros((len(xs), T, F_), dtype=np.float32)
        for j, seq in enumerate(xs):
            x[j, : len(seq)] = (seq - self.mean) / self.std
        return {"x": torch.from_numpy(x), "y": torch.tensor(ys, dtype=torch.long),
                "lengths": torch.tensor([len(s) for s in xs], dtype=torch.long)}

    @property
    def chance(self) -> float:
        return self._chance

    def model_config(self, cell: str, hidden_size: int, **layer_options) -> ModelConfig:
        return ModelConfig(cell, self.features, hidden_size, len(self.classes), readout="last",
                           **layer_options)

    def train_batch(self, step: int, config, generator: torch.Generator) -> Batch:
        idx = torch.randint(0, len(self.train["y"]), (config.batch_size,), generator=generator)
        return {k: v[idx] for k, v in self.train.items()}

    def loss(self, model, batch: Batch, carry=None):
        logits, _ = model(batch["x"], lengths=batch["lengths"])
        return F.cross_entropy(logits, batch["y"]), None

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        logits, _ = model(self.val["x"], lengths=self.val["lengths"])
        return {"accuracy": float((logits.argmax(-1) == self.val["y"]).float().mean()),
                "xent": float(F.cross_entropy(logits, self.val["y"]))}

    def probe(self) -> Batch:
        return {k: v[:8] for k, v in self.val.items()}

    def artefacts(self) -> dict:
        return {"classes": self.classes, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @property
    def target(self) -> float | None:
        return None if math.isnan(self._chance) else 0.5 * (1 + self._chance)

"""The activations of every layer of a run's model over one input sequence.

The model runs under :func:`rnnlab.nn.record` (gates only, no gradient) in chunks of
steps with its state carried, so a long input never holds more than one chunk's
activations in torch; a bidirectional model reads the whole input in one call (its
reverse direction starts from the end), and its reverse layers follow the forward ones.
Per layer the trace holds the recorded gates (LSTM i, f, g, o and c; GRU r, z, n; RNN:
the pre-activation is turned into h) and h_t, rebuilt from them with the reference's
equations (``rnnlab.reference``: LSTM h = o ⊙ tanh(c), GRU h = (1 − z) ⊙ n + z ⊙ h_{t−1},
RNN h = tanh(a) — the model's RNN uses tanh), where t − 1 is the previous step in the
direction's own order (t + 1 in reverse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import rnnlab.nn as rnn_nn
from rnnlab.tasks import SequenceModel

# The quantities each cell's layer shows, in the order the page lists them.
QUANTITIES = {"lstm": ("h", "c", "i", "f", "g", "o"), "gru": ("h", "r", "z", "n"),
              "rnn": ("h",)}
# Quantities in (-1, 1) (tanh); the rest are gates in (0, 1). c is unbounded.
SIGNED = {"h", "g", "n", "c"}
CHUNK = 4096


@dataclass
class LayerTrace:
    key: str  # "l<k>" or "l<k>_reverse", as rnnlab.nn.record names it
    values: dict[str, np.ndarray]  # quantity -> (T, H) float32
    state: list[np.ndarray]  # per step, the state entering the next step: [h] or [h, c]


def trace(model: SequenceModel, x: torch.Tensor) -> list[LayerTrace]:
    """Every layer's quantities over the one sequence ``x`` (batch of 1): the forward
    direction's layers, then (bidirectional) the reverse direction's."""
    cell, L = model.config.cell, model.config.num_layers
    keys = [f"l{k}" for k in range(L)]
    if model.config.bidirectional:
        keys += [f"l{k}_reverse" for k in range(L)]
    chunk = x.shape[1] if model.config.bidirectional else CHUNK
    parts: dict[str, dict[str, list[np.ndarray]]] = {k: {} for k in keys}
    carry, h_last = None, [np.zeros(model.config.hidden_size, np.float32) for _ in keys]
    with torch.no_grad(), rnn_nn.record(model.rnn, gates=True, grads=False) as rec:
        for start in range(0, x.shape[1], chunk):
            _, carry = model(x[:, start:start + chunk], carry)
            for layer, key in enumerate(keys):
                gates = {n: t[0].numpy().astype(np.float32) for n, t in rec.gates[key].items()}
                h = _hidden(cell, gates, h_last[layer], key.endswith("_reverse"))
                h_last[layer] = h[-1]
                values = {"h": h, **{q: gates[q] for q in QUANTITIES[cell] if q != "h"}}
                for q, v in values.items():
                    parts[key].setdefault(q, []).append(v)
    out = []
    for key in keys:
        values = {q: np.concatenate(parts[key][q]) for q in QUANTITIES[cell]}
        state = [values["h"]] + ([values["c"]] if cell == "lstm" else [])
        out.append(LayerTrace(key, values, state))
    return out


def _hidden(cell: str, gates: dict[str, np.ndarray], h_prev: np.ndarray,
            reverse: bool) -> np.ndarray:
    if cell == "lstm":
        return gates["o"] * np.tanh(gates["c"])
    if cell == "rnn":
        return np.tanh(gates["a"])
    z, n = gates["z"], gates["n"]
    h = np.empty_like(n)
    for t in (reversed(range(len(n))) if reverse else range(len(n))):
        h_prev = (1.0 - z[t]) * n[t] + z[t] * h_prev
        h[t] = h_prev
    return h

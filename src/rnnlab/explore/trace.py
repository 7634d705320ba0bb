"""The activations of every layer of a run's model over one input sequence.

The model runs under :func:`rnnlab.nn.record` (gates only, no gradient) in chunks of
steps with its state carried, so a long input never holds more than one chunk's
activations in torch; a bidirectional model reads the whole input in one call (its
reverse direction starts from the end), and its reverse layers follow the forward ones.
Per layer the trace holds h_t, the layer's own output sequence as the recorder keeps it
(``Recording.hidden``: exact for every cell and regulariser, the eval form of zoneout
included), and the gates and states the recorder names for the cell (the layers'
docstrings; ``rnnlab.reference`` for their equations). A run's model is in eval mode:
dropout, weight-drop and recurrent dropout are off, and zoneout is its expectation
(``reference/lstm_masked.py``, ``reference/gru_masked.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import rnnlab.nn as rnn_nn
from rnnlab.tasks import SequenceModel

# The quantities each cell's layer shows, in the order the page lists them: h, then the
# recorder's names (LSTM c and i, f, g, o; GRU r, z, n; minGRU z, h̃; minLSTM f, i,
# f' = f/(f+i), h̃); the layer-normalised cells record their base cell's.
QUANTITIES = {"lstm": ("h", "c", "i", "f", "g", "o"), "gru": ("h", "r", "z", "n"),
              "rnn": ("h",), "lnlstm": ("h", "c", "i", "f", "g", "o"),
              "lngru": ("h", "r", "z", "n"), "mingru": ("h", "z", "h_tilde"),
              "minlstm": ("h", "f", "i", "f_norm", "h_tilde")}
# Signed quantities; the rest are gates in (0, 1). h, g, n are in (-1, 1) (tanh); c and
# the min cells' linear candidate h̃ are unbounded (read through tanh where a scale is
# needed).
UNBOUNDED = {"c", "h_tilde"}
SIGNED = {"h", "g", "n"} | UNBOUNDED
CHUNK = 4096


@dataclass
class LayerTrace:
    key: str  # "l<k>" or "l<k>_reverse", as rnnlab.nn.record names it
    values: dict[str, np.ndarray]  # quantity -> (T, H) float32
    state: list[np.ndarray]  # per step, the state entering the next step: [h] or [h, c]


def trace(model: SequenceModel, x: torch.Tensor) -> list[LayerTrace]:
    """Every layer's quantities over the one sequence ``x`` (batch of 1): the forward
    direction's layers, then (bidirectional) the reverse direction's."""
    names, L = QUANTITIES[model.config.cell], model.config.num_layers
    keys = [f"l{k}" for k in range(L)]
    if model.config.bidirectional:
        keys += [f"l{k}_reverse" for k in range(L)]
    chunk = x.shape[1] if model.config.bidirectional else CHUNK
    parts: dict[str, dict[str, list[np.ndarray]]] = {k: {q: [] for q in names} for k in keys}
    carry = None
    with torch.no_grad(), rnn_nn.record(model.rnn, gates=True, grads=False) as rec:
        for start in range(0, x.shape[1], chunk):
            _, carry = model(x[:, start:start + chunk], carry)
            for key in keys:
                values = {"h": rec.hidden[key], **rec.gates[key]}
                for q in names:
                    parts[key][q].append(values[q][0].numpy().astype(np.float32))
    out = []
    for key in keys:
        values = {q: np.concatenate(parts[key][q]) for q in names}
        out.append(LayerTrace(key, values, [values[q] for q in ("h", "c") if q in values]))
    return out

"""The one model every task uses: input (embedding or raw features) → rnnlab layer → head.

Shapes (batch first throughout)::

    x       (B, T, F) float features   or (B, T) int64 tokens
    output  (B, T, O) with readout "all"   or (B, O) with readout "last"

"last" reads the final hidden state h_n of the top layer (both directions when
bidirectional), which with ``lengths`` is the state at each sample's last valid step.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields

import torch
from torch import nn

import rnnlab.nn as rnn_nn
from rnnlab._io import InputError

CELLS = ("rnn", "lstm", "gru", "mingru", "minlstm", "lnlstm", "lngru")
CLASSIC_CELLS = ("rnn", "lstm", "gru")  # what a comparison runs unless told
_GATES = {"rnn": 1, "lstm": 4, "gru": 3, "mingru": 2, "minlstm": 3, "lnlstm": 4, "lngru": 3}
_MIN_LAYERS = {"mingru": rnn_nn.MinGRU, "minlstm": rnn_nn.MinLSTM}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


REGULARISERS = ("weight_drop", "recurrent_dropout", "zoneout")
# The cells that take none of them: a comparison trains them without, and a run folder
# written before they were refused reads back with the (never applied) values at 0.
UNREGULARISED = ("rnn", "mingru", "minlstm")


def without_unused_regularisers(d: dict) -> dict:
    """A stored configuration ``d`` with the regularisers of an UNREGULARISED cell at 0
    (what its model ran with: older versions stored and ignored them)."""
    if d.get("cell") in UNREGULARISED:
        return {**d, **{name: 0.0 for name in REGULARISERS if name in d}}
    return d


def check_regularisers(cell: str, weight_drop: float, recurrent_dropout: float,
                       zoneout: float) -> None:
    """Refuse, by name, regularisers a ``cell`` does not take (never ignore one silently):
    the LSTM and GRU take all three; their layer-normalised forms weight_drop only (no
    layer-normalised masked op exists yet); rnn, mingru and minlstm none."""
    given = {name: value for name, value in (("weight_drop", weight_drop),
                                             ("recurrent_dropout", recurrent_dropout),
                                             ("zoneout", zoneout)) if value}
    if cell in ("lnlstm", "lngru"):
        given.pop("weight_drop", None)
        kind = "layer-normalised"
        takes = "takes weight_drop but not (yet) recurrent_dropout or zoneout"
    elif cell in ("lstm", "gru"):
        given = {}
    else:
        kind, takes = "not an LSTM or GRU", "takes none of weight_drop, recurrent_dropout, zoneout"
    if given:
        got = ", ".join(f"{name}={value}" for name, value in given.items())
        raise InputError(f"the cell {cell} ({kind}) {takes}; got {got}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a task model; saved as ``model.json`` beside its weights."""

    cell: str
    input_size: int  # feature count, or vocabulary size when embed_dim > 0
    hidden_size: int
    output_size: int
    num_layers: int = 1
    dropout: float = 0.0
    bidirectional: bool = False
    embed_dim: int = 0  # 0: raw float features; > 0: token ids through an nn.Embedding
    readout: str = "last"  # "last" (one prediction per sequence) or "all" (one per step)
    forget_bias: float = 1.0  # LSTM and layer-normalised LSTM only
    weight_drop: float = 0.0  # LSTM and GRU only (rnnlab.nn.regularise)
    recurrent_dropout: float = 0.0  # LSTM and GRU, not their layer-normalised forms
    zoneout: float = 0.0  # likewise

    def __post_init__(self):
        if self.cell not in CELLS:
            raise InputError(f"unknown cell {self.cell!r}; expected one of {', '.join(CELLS)}")
        for name in ("input_size", "hidden_size", "output_size", "num_layers"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not _is_int(self.embed_dim) or self.embed_dim < 0:
            raise InputError(f"embed_dim must be an integer >= 0, got {self.embed_dim!r}")
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bidirectional, bool):
            raise InputError(f"bidirectional must be true or false, got {self.bidirectional!r}")
        if not _is_number(self.forget_bias):
            raise InputError(f"forget_bias must be a finite number, got {self.forget_bias!r}")
        for name in ("weight_drop", "recurrent_dropout", "zoneout"):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value < 1.0:
                raise InputError(f"{name} must be a number in [0, 1), got {value!r}")
        check_regularisers(self.cell, self.weight_drop, self.recurrent_dropout, self.zoneout)
        if self.readout not in ("last", "all"):
            raise InputError(f"readout must be 'last' or 'all', got {self.readout!r}")
        if self.readout == "all" and self.bidirectional:
            raise InputError("a bidirectional layer cannot predict step by step (readout 'all')")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        if not isinstance(d, dict):
            raise InputError(f"a model configuration is a JSON object, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise InputError(f"unknown model field {unknown[0]!r}; expected {', '.join(names)}")
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in d]
        if missing:
            raise InputError(f"the model field {missing[0]!r} is missing")
        return cls(**without_unused_regularisers(d))

    def num_parameters(self) -> int:
        """Parameter count computed from the shapes (no model is built)."""
        G, H, D = _GATES[self.cell], self.hidden_size, 2 if self.bidirectional else 1
        n = 0
        layer_in = self.embed_dim if self.embed_dim else self.input_size
        for _ in range(self.num_layers):
            if self.cell in _MIN_LAYERS:  # W_ih (G·H, in) and one bias; no W_hh
                n += D * (G * H * layer_in + G * H)
            else:
                n += D * (G * H * (layer_in + H) + 2 * G * H)
            if self.cell == "lnlstm":  # γ_ih, γ_hh (4H each), γ_c, β_c (H each)
                n += D * (2 * G * H + 2 * H)
            if self.cell == "lngru":  # γ_ih, γ_hh (3H each)
                n += D * 2 * G * H
            layer_in = D * H
        if self.embed_dim:
            n += self.input_size * self.embed_dim
        n += D * H * self.output_size + self.output_size
        return n


def match_hidden(config: ModelConfig, target_params: int) -> int:
    """The hidden size whose model has the parameter count closest to ``target_params``."""
    best_h, best_gap = 1, None
    for h in range(1, 4097):
        n = ModelConfig(**{**config.to_dict(), "hidden_size": h}).num_parameters()
        gap = abs(n - target_params)
        if best_gap is None or gap < best_gap:
            best_h, best_gap = h, gap
        if n > target_params:
            break
    return best_h


class SequenceModel(nn.Module):
    """Embedding/features → RNN | LSTM | GRU (layer_norm for lnlstm, lngru) | MinGRU | MinLSTM
    (rnnlab.nn) → linear head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.input_size, c.embed_dim) if c.embed_dim else None
        layer_in = c.embed_dim if c.embed_dim else c.input_size
        common = dict(
            num_layers=c.num_layers,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            bidirectional=c.bidirectional,
        )
        regularisers = dict(weight_drop=c.weight_drop, recurrent_dropout=c.recurrent_dropout,
                            zoneout=c.zoneout)
        if c.cell in ("lstm", "lnlstm"):
            self.rnn = rnn_nn.LSTM(layer_in, c.hidden_size, forget_bias=c.forget_bias,
                                   layer_norm=c.cell == "lnlstm", **common, **regularisers)
        elif c.cell in ("gru", "lngru"):
            self.rnn = rnn_nn.GRU(layer_in, c.hidden_size, layer_norm=c.cell == "lngru", **common,
                                  **regularisers)
        elif c.cell in _MIN_LAYERS:
            self.rnn = _MIN_LAYERS[c.cell](layer_in, c.hidden_size, **common)
        else:
            self.rnn = rnn_nn.RNN(layer_in, c.hidden_size, **common)
        D = 2 if c.bidirectional else 1
        self.head = nn.Linear(D * c.hidden_size, c.output_size)

    def forward(self, x: torch.Tensor, hx=None, *, lengths: torch.Tensor | None = None):
        """Return (prediction, final state); the state is what ``hx`` accepts next time."""
        z = self.embed(x) if self.embed is not None else x  # (B, T, E|F)
        out, state = self.rnn(z, hx, lengths=lengths)  # (B, T, D*H)
        if self.config.readout == "all":
            return self.head(out), state  # (B, T, O)
        h_n = state[0] if isinstance(state, tuple) else state  # (L*D, B, H)
        D = 2 if self.config.bidirectional else 1
        top = torch.cat(list(h_n[-D:]), dim=-1)  # (B, D*H)
        return self.head(top), state  # (B, O)


def detach_state(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()

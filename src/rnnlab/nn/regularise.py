"""Recurrent regularisers of the LSTM and GRU layers: weight-drop, recurrent dropout, zoneout.

The equations are written once, in :mod:`rnnlab.reference.lstm_masked` and
:mod:`rnnlab.reference.gru_masked` (recurrent dropout and zoneout) and in
:func:`drop_weight` (weight-drop). This module checks the options, draws the masks and
picks the op:

- ``weight_drop`` (DropConnect on W_hh, Merity et al. 2018) only changes the weight the
  op receives, so the plain fused op runs on every backend and autograd carries the
  gradient through the mask to W_hh.
- ``recurrent_dropout`` (Gal & Ghahramani 2016) and ``zoneout`` (Krueger et al. 2017)
  change the recurrence: they run the masked ops of :mod:`rnnlab.ops_masked`, which take
  the masks as tensors.

Masks are drawn from torch's default generator of the layer's device, per layer and
direction in the order: weight-drop (W_hh's shape), recurrent dropout (B, P), zoneout
of h (T, B, P), zoneout of c (T, B, H) (LSTM). Seeding torch therefore replays them.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from rnnlab import ops_masked
from rnnlab.backends.contract import Masks
from rnnlab.nn.errors import ArgumentError

__all__ = [
    "NONE", "Regularisers", "check", "draw_masks", "drop_weight", "run_masked",
    "training_weights", "zoneout_step",
]


class Regularisers:
    """The validated options of one layer: ``weight_drop`` and ``recurrent_dropout`` (p),
    ``zoneout`` as given (p, or the LSTM's (p_h, p_c)) and ``zoneout_shares`` (p_h, p_c),
    p_c = 0 for the GRU. All 0 is the plain layer."""

    __slots__ = ("recurrent_dropout", "weight_drop", "zoneout", "zoneout_shares")

    def __init__(self, weight_drop: float, recurrent_dropout: float,
                 zoneout: float | tuple[float, float], zoneout_shares: tuple[float, float]
                 ) -> None:
        self.weight_drop = weight_drop
        self.recurrent_dropout = recurrent_dropout
        self.zoneout = zoneout
        self.zoneout_shares = zoneout_shares

    @property
    def masked(self) -> bool:
        """Whether the recurrence itself changes (recurrent dropout or zoneout): the
        masked ops must run."""
        return bool(self.recurrent_dropout or any(self.zoneout_shares))

    def extra_repr(self) -> str:
        """The options that are on, as the layer's repr shows them."""
        parts = []
        if self.weight_drop:
            parts.append(f"weight_drop={self.weight_drop}")
        if self.recurrent_dropout:
            parts.append(f"recurrent_dropout={self.recurrent_dropout}")
        if any(self.zoneout_shares):
            parts.append(f"zoneout={self.zoneout}")
        return "".join(", " + part for part in parts)


NONE = Regularisers(0.0, 0.0, 0.0, (0.0, 0.0))


def _probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a probability in [0, 1), got {value!r}")
    if not 0 <= value < 1:
        raise ArgumentError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def check(family: str, weight_drop: object, recurrent_dropout: object, zoneout: object
          ) -> Regularisers:
    """Validate the options of a ``family`` layer ("rnn", "lstm", "gru"): each p in
    [0, 1); ``zoneout`` a p or, for the LSTM, a pair (p_h, p_c)."""
    weight_drop = _probability("weight_drop", weight_drop)
    recurrent_dropout = _probability("recurrent_dropout", recurrent_dropout)
    if isinstance(zoneout, (tuple, list)):
        if family != "lstm" or len(zoneout) != 2:
            expected = "a pair (p_h, p_c)" if family == "lstm" else "one p (a GRU has no c)"
            raise ArgumentError(
                f"zoneout of {family.upper()} must be a probability p in [0, 1) or "
                f"{expected}; got {zoneout!r}"
            )
        zoneout = (_probability("zoneout p_h", zoneout[0]),
                   _probability("zoneout p_c", zoneout[1]))
        shares = zoneout
    else:
        zoneout = _probability("zoneout", zoneout)
        shares = (zoneout, zoneout if family == "lstm" else 0.0)
    options = Regularisers(weight_drop, recurrent_dropout, zoneout, shares)
    if family == "rnn" and (weight_drop or options.masked):
        raise ArgumentError(
            "weight_drop, recurrent_dropout and zoneout are options of LSTM and GRU, not RNN"
        )
    return options


def drop_weight(w_hh: Tensor, p: float) -> Tensor:
    r"""Weight-drop: W_hh ⊙ M / (1 - p), M ~ Bernoulli(1 - p) drawn once per call, of
    W_hh's shape. Differentiable: ∂L/∂W_hh = M / (1 - p) ⊙ ∂L/∂(the dropped weight)."""
    keep = torch.empty_like(w_hh, memory_format=torch.contiguous_format).bernoulli_(1 - p)
    return w_hh * keep.div_(1 - p)


def training_weights(layer, weights: list[Tensor]) -> list[Tensor]:
    """One direction's weights as the op receives them: with ``weight_drop`` in training,
    W_hh (``weights[1]``) replaced by its dropped copy; otherwise unchanged."""
    p = layer.regularisers.weight_drop
    if not (p and layer.training):
        return weights
    return [weights[0], drop_weight(weights[1], p), *weights[2:]]


def draw_masks(layer, x: Tensor, h0: Tensor) -> Masks | None:
    """The recurrent dropout and zoneout masks of one direction (x (T, B, ·), h0 (B, P)),
    or None when the plain recurrence runs (no such option, or recurrent dropout alone
    in eval, where d = 1).

    Training: d = M / (1 - p), M ~ Bernoulli(1 - p) (B, P); k^h ~ Bernoulli(p_h) (T, B, P),
    k^c ~ Bernoulli(p_c) (T, B, H). Eval: no d; k^h = p_h, k^c = p_c (the expectation),
    broadcast views of one number.
    """
    reg = layer.regularisers
    p_h, p_c = reg.zoneout_shares
    if not (p_h or p_c or (reg.recurrent_dropout and layer.training)):
        return None
    T, B = x.shape[0], x.shape[1]
    state_h = (T, B, h0.shape[-1])
    state_c = (T, B, layer.hidden_size)
    drop = None
    if reg.recurrent_dropout and layer.training:
        drop = h0.new_empty(B, h0.shape[-1]).bernoulli_(1 - reg.recurrent_dropout)
        drop.div_(1 - reg.recurrent_dropout)
    keep_h = _zoneout(p_h, state_h, h0, layer.training)
    keep_c = _zoneout(p_c, state_c, h0, layer.training) if layer.family == "lstm" else None
    return Masks(drop, keep_h, keep_c)


def _zoneout(p: float, shape: tuple[int, ...], like: Tensor, training: bool
             ) -> Tensor | None:
    if not p:
        return None
    if training:
        return like.new_empty(shape).bernoulli_(p)
    return like.new_full((), p).expand(shape)


def run_masked(layer, x, h0, c0, weights, lengths, probe, reverse, masks: Masks):
    """One direction on the masked op; returns what ``RNNBase._run_direction`` does:
    (y, h_n, c_n or None, {gate name: (T, B, H)}), the LSTM's "c" the cell state after
    zoneout."""
    w_ih, w_hh = weights[0], weights[1]
    b_ih, b_hh = (weights[2], weights[3]) if layer.bias else (None, None)
    H = layer.hidden_size
    if layer.family == "lstm":
        w_hr = weights[-1] if layer.proj_size else None
        y, h, c, gates, cells, _ = ops_masked.lstm_masked(
            x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *masks, lengths, probe, reverse
        )
        i, f, g, o = gates.split(H, dim=2)
        return y, h, c, {"i": i, "f": f, "g": g, "o": o, "c": cells}
    y, h, gates = ops_masked.gru_masked(
        x, h0, w_ih, w_hh, b_ih, b_hh, masks.drop_h, masks.keep_h, lengths, probe, reverse,
        layer.reset_after,
    )
    r, z, n, _ = gates.split(H, dim=2)
    return y, h, None, {"r": r, "z": z, "n": n}


def zoneout_step(cell, previous: list[Tensor], new: list[Tensor]) -> list[Tensor]:
    """A cell's zoneout: each state k ⊙ previous + (1 - k) ⊙ new, k ~ Bernoulli(p) drawn
    now in training (h, then c), k = p in eval; the states unchanged without zoneout. One
    step of the layer's zoneout, whose masks are drawn per step likewise."""
    out = []
    for p, before, after in zip(cell.regularisers.zoneout_shares, previous, new, strict=False):
        keep = _zoneout(p, tuple(after.shape), after, cell.training)
        out.append(after if keep is None else keep * before + (1 - keep) * after)
    return out

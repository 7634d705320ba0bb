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
    "check", "describe", "draw_masks", "drop_weight", "run_masked", "training_weights",
    "zoneout_shares", "zoneout_step",
]


def zoneout_shares(module) -> tuple[float, float]:
    """(p_h, p_c) of a layer's or cell's ``zoneout`` (p alone: p_c = p for the LSTM, 0
    for the GRU, which has no c)."""
    if isinstance(module.zoneout, tuple):
        return module.zoneout
    return module.zoneout, (module.zoneout if module.family == "lstm" else 0.0)


def describe(module) -> str:
    """The options that are on, as the module's repr shows them."""
    parts = [f"{name}={getattr(module, name)}"
             for name in ("weight_drop", "recurrent_dropout", "zoneout")
             if getattr(module, name, 0.0)]
    return "".join(", " + part for part in parts)


def _probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a probability in [0, 1), got {value!r}")
    if not 0 <= value < 1:
        raise ArgumentError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def check(family: str, weight_drop: object, recurrent_dropout: object, zoneout: object
          ) -> tuple[float, float, float | tuple[float, float]]:
    """Validate the options of a ``family`` layer ("rnn", "lstm", "gru"): each p in
    [0, 1); ``zoneout`` a p or, for the LSTM, a pair (p_h, p_c). Returns them as floats
    (the layer keeps them as plain attributes, so ``torch.load(weights_only=True)`` of a
    whole model needs no class of this module)."""
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
    else:
        zoneout = _probability("zoneout", zoneout)
    if family == "rnn" and (weight_drop or recurrent_dropout or zoneout):
        raise ArgumentError(
            "weight_drop, recurrent_dropout and zoneout are options of LSTM and GRU, not RNN"
        )
    return weight_drop, recurrent_dropout, zoneout


def drop_weight(w_hh: Tensor, p: float) -> Tensor:
    r"""Weight-drop: W_hh ⊙ M / (1 - p), M ~ Bernoulli(1 - p) drawn once per call, of
    W_hh's shape. Differentiable: ∂L/∂W_hh = M / (1 - p) ⊙ ∂L/∂(the dropped weight)."""
    keep = torch.empty_like(w_hh, memory_format=torch.contiguous_format).bernoulli_(1 - p)
    return w_hh * keep.div_(1 - p)


def training_weights(layer, weights: list[Tensor]) -> list[Tensor]:
    """One direction's weights as the op receives them: with ``weight_drop`` in training,
    W_hh (``weights[1]``) replaced by its dropped copy; otherwise unchanged."""
    p = layer.weight_drop
    if not (p and layer.training):
        return weights
    return [weights[0], drop_weight(weights[1], p), *weights[2:]]


def has_masks(layer) -> bool:
    """Whether :func:`draw_masks` draws masks for ``layer`` in its present mode."""
    p_h, p_c = zoneout_shares(layer)
    return bool(p_h or p_c or (layer.training and layer.recurrent_dropout))


def draw_masks(layer, x: Tensor, h0: Tensor) -> Masks | None:
    """The recurrent dropout and zoneout masks of one direction (x (T, B, ·), h0 (B, P)),
    or None when the plain recurrence runs (no such option, or recurrent dropout alone
    in eval, where d = 1).

    Training: d = M / (1 - p), M ~ Bernoulli(1 - p) (B, P); k^h ~ Bernoulli(p_h) (T, B, P),
    k^c ~ Bernoulli(p_c) (T, B, H). Eval: no d; k^h = p_h, k^c = p_c (the expectation),
    broadcast views of one number.
    """
    if not has_masks(layer):
        return None
    p_h, p_c = zoneout_shares(layer)
    p_drop = layer.recurrent_dropout if layer.training else 0.0
    T, B = x.shape[0], x.shape[1]
    state_h = (T, B, h0.shape[-1])
    state_c = (T, B, layer.hidden_size)
    drop = None
    if p_drop:
        drop = h0.new_empty(B, h0.shape[-1]).bernoulli_(1 - p_drop).div_(1 - p_drop)
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
    for p, before, after in zip(zoneout_shares(cell), previous, new, strict=False):
        keep = _zoneout(p, tuple(after.shape), after, cell.training)
        out.append(after if keep is None else keep * before + (1 - keep) * after)
    return out

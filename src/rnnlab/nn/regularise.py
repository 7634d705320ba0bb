"""Recurrent regularisers of the LSTM and GRU layers: weight-drop, recurrent dropout, zoneout.

The equations are written once, in :mod:`rnnlab.reference.masked` (recurrent dropout
and zoneout) and in :func:`drop_weight` (weight-drop). This module checks the options,
draws the masks and picks the op:

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

from rnnlab.nn.errors import ArgumentError

__all__ = ["NONE", "Regularisers", "check", "drop_weight", "training_weights"]


class Regularisers:
    """The validated options of one layer: ``weight_drop``, ``recurrent_dropout`` (p) and
    ``zoneout`` (p_h, p_c), p_c = 0 for the GRU. All 0 is the plain layer."""

    __slots__ = ("recurrent_dropout", "weight_drop", "zoneout")

    def __init__(self, weight_drop: float, recurrent_dropout: float, zoneout: tuple) -> None:
        self.weight_drop = weight_drop
        self.recurrent_dropout = recurrent_dropout
        self.zoneout = zoneout

    @property
    def masked(self) -> bool:
        """Whether the recurrence itself changes (recurrent dropout or zoneout): the
        masked ops must run."""
        return bool(self.recurrent_dropout or any(self.zoneout))

    def extra_repr(self) -> str:
        """The options that are on, as the layer's repr shows them."""
        parts = []
        if self.weight_drop:
            parts.append(f"weight_drop={self.weight_drop}")
        if self.recurrent_dropout:
            parts.append(f"recurrent_dropout={self.recurrent_dropout}")
        if any(self.zoneout):
            parts.append(f"zoneout={self.zoneout}")
        return "".join(", " + part for part in parts)


NONE = Regularisers(0.0, 0.0, (0.0, 0.0))


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
        pair = (_probability("zoneout p_h", zoneout[0]), _probability("zoneout p_c", zoneout[1]))
    else:
        p = _probability("zoneout", zoneout)
        pair = (p, p if family == "lstm" else 0.0)
    options = Regularisers(weight_drop, recurrent_dropout, pair)
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

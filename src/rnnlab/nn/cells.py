"""Single-step cells: torch.nn-compatible RNNCell, LSTMCell and GRUCell.

A cell is the unit a sequence layer applies at every step. These run the same ops as
the layers with a sequence of length one, so a loop of a cell equals its layer.

Shape legend: input (B, I) or (I,) unbatched; h (B, H) or (H,); c (B, H) or (H,).

As in torch.nn, a cell may have ``input_size`` or ``hidden_size`` 0 and take a batch of
0 samples; such calls that leave nothing to compute return empty tensors without
reaching the ops; an input of 0 features runs the ops as it is (every backend takes I = 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnlab import ops
from rnnlab.nn import _checks, _layer_norm, regularise
from rnnlab.nn._empty import empty_outputs
from rnnlab.nn.errors import ArgumentError

__all__ = ["GRUCell", "LSTMCell", "RNNCell"]

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class _CellBase(nn.Module):
    def __init__(self, family, input_size, hidden_size, bias, device, dtype) -> None:
        super().__init__()
        self.family = family
        self.input_size = _checks.positive_int("input_size", input_size, minimum=0)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size, minimum=0)
        self.bias = _checks.boolean("bias", bias)
        G = _GATES[family] * self.hidden_size
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(G, self.input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(G, self.hidden_size, **factory))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(G, **factory))
            self.bias_hh = nn.Parameter(torch.empty(G, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter ~ U(-1/√H, 1/√H) (H = 0: none to draw);
        an LSTMCell's layer-normalisation gains 1, biases 0."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for name, weight in self.named_parameters():
            if not _layer_norm.is_layer_norm_parameter(name):
                nn.init.uniform_(weight, -bound, bound)
        _layer_norm.reset(self)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "layer_norm", False):
            s += ", layer_norm=True"
        return s

    def _add_layer_norm(self, layer_norm, device, dtype) -> None:
        """The ``layer_norm`` option: its parameters (:mod:`rnnlab.nn._layer_norm`)."""
        self.layer_norm = _checks.layer_norm(layer_norm, self.family, 0)
        if self.layer_norm:
            for name, shape in _layer_norm.parameter_shapes(self.family, self.hidden_size,
                                                            self.bias):
                setattr(self, name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
            _layer_norm.reset(self)

    def _layer_norm_step(self, x, states, weights) -> list[Tensor]:
        """One layer-normalised step from x (1, B, I) and states (B, H): the new states."""
        names = [stem for stem, _ in _layer_norm.parameter_shapes(self.family, 0, self.bias)]
        row = [w for w in weights if w is not None] + [getattr(self, n) for n in names]
        c = states[1] if len(states) == 2 else None
        _, h_n, c_n, _ = _layer_norm.run(
            self.family, x, states[0], c, row, self.bias, None, None, False, infer=False
        )
        return [h_n] if c_n is None else [h_n, c_n]

    def _prepare(self, input: Tensor, states: list[tuple[str, Tensor | None]]):
        """Validate; return x (1, B, I), the states as (B, H) and whether input was batched."""
        _checks.tensor("input", input)
        if input.dim() not in (1, 2):
            raise ArgumentError(
                f"{type(self).__name__} input must be 2-D (B, I) or 1-D (I,), got shape "
                f"{tuple(input.shape)}"
            )
        _checks.same_dtype_device("input", input, self.weight_ih)
        if input.shape[-1] != self.input_size:
            raise ArgumentError(
                f"input has {input.shape[-1]} features, expected input_size={self.input_size}"
            )
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        B = x.shape[0]
        out = []
        for name, state in states:
            if state is None:
                out.append(x.new_zeros(B, self.hidden_size))
                continue
            _checks.tensor(name, state)
            _checks.same_dtype_device(name, state, self.weight_ih)
            expected = (B, self.hidden_size) if batched else (self.hidden_size,)
            _checks.shape(name, state, expected, "batch, hidden_size" if batched else "hidden_size")
            out.append(state if batched else state.unsqueeze(0))
        return x.unsqueeze(0).contiguous(), out, batched

    def _step(self, op, x: Tensor, states: list[Tensor], batched: bool) -> list[Tensor]:
        """One step of ``op`` from x (1, B, I) and states (B, H); returns the new states,
        unbatched again if the input was. Nothing to compute (B or H = 0): empty states."""
        weights = [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        if x.shape[1] == 0 or self.hidden_size == 0:
            sources = [x, *states, *(w for w in weights if w is not None)]
            new = empty_outputs([tuple(s.shape) for s in states], sources)
        else:
            new = op(x, *states, *weights)
        return new if batched else [s.squeeze(0) for s in new]


class RNNCell(_CellBase):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh), or relu with ``nonlinearity="relu"``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ArgumentError(
                f"unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'"
            )
        self.nonlinearity = nonlinearity
        super().__init__("rnn", input_size, hidden_size, bias, device, dtype)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity}" if self.nonlinearity != "tanh" else "")

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """h' from ``input`` (B, I) or (I,) and ``hx`` (B, H) or (H,), zeros if omitted."""
        x, states, batched = self._prepare(input, [("hx", hx)])
        relu = self.nonlinearity == "relu"

        def op(x, h, w_ih, w_hh, b_ih, b_hh):
            return [ops.rnn(x, h, w_ih, w_hh, b_ih, b_hh, None, None, False, relu)[1]]

        return self._step(op, x, states, batched)[0]


class LSTMCell(_CellBase):
    """One LSTM step: (h', c') from x and (h, c); gates i, f, g, o as in :class:`LSTM`.

    ``layer_norm=True``: the layer-normalised step of :class:`rnnlab.nn.LSTM` with
    ``layer_norm=True``, parameters ``gamma_ih``, ``gamma_hh``, ``gamma_c``, ``beta_c``.

    ``zoneout=p`` or ``(p_h, p_c)`` (rnnlab extension): h' = k ⊙ h + (1 - k) ⊙ h̃ (and c'
    likewise), k ~ Bernoulli(p) drawn at every call in training, k = p in eval.
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None,
        *, layer_norm: bool = False, zoneout: float | tuple[float, float] = 0.0,
    ) -> None:
        self.zoneout = regularise.check("lstm", 0.0, 0.0, zoneout)[2]
        super().__init__("lstm", input_size, hidden_size, bias, device, dtype)
        self._add_layer_norm(layer_norm, device, dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + regularise.describe(self)

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """(h', c') from ``input`` (B, I) or (I,) and ``hx = (h, c)``, zeros if omitted."""
        if hx is not None and not isinstance(hx, (tuple, list)):
            raise TypeError(f"hx for LSTMCell must be a tuple (h, c), got {type(hx).__name__}")
        if hx is not None and len(hx) != 2:
            raise ArgumentError(
                f"hx for LSTMCell must be a tuple (h, c), got a {type(hx).__name__} of {len(hx)}"
            )
        h, c = (None, None) if hx is None else hx
        x, states, batched = self._prepare(input, [("h", h), ("c", c)])

        def op(x, h, c, w_ih, w_hh, b_ih, b_hh):
            if self.layer_norm:
                h_n, c_n = self._layer_norm_step(x, [h, c], [w_ih, w_hh, b_ih, b_hh])
            else:
                _, h_n, c_n, _, _ = ops.lstm(x, h, c, w_ih, w_hh, b_ih, b_hh, None, None, None,
                                             False)
            return regularise.zoneout_step(self, [h, c], [h_n, c_n])

        h_n, c_n = self._step(op, x, states, batched)
        return h_n, c_n


class GRUCell(_CellBase):
    """One GRU step; ``reset_after=False`` gives the reset-before variant of Cho et al.;
    ``layer_norm=True`` the layer-normalised step of :class:`rnnlab.nn.GRU`, parameters
    ``gamma_ih``, ``gamma_hh``; ``zoneout=p`` as for :class:`LSTMCell`."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        reset_after: bool = True,
        layer_norm: bool = False,
        zoneout: float = 0.0,
    ) -> None:
        self.reset_after = _checks.boolean("reset_after", reset_after)
        self.zoneout = regularise.check("gru", 0.0, 0.0, zoneout)[2]
        super().__init__("gru", input_size, hidden_size, bias, device, dtype)
        if layer_norm is True and not self.reset_after:
            raise ArgumentError("layer_norm=True needs reset_after=True; got reset_after=False")
        self._add_layer_norm(layer_norm, device, dtype)

    def extra_repr(self) -> str:
        s = super().extra_repr() + ("" if self.reset_after else ", reset_after=False")
        return s + regularise.describe(self)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """h' from ``input`` (B, I) or (I,) and ``hx`` (B, H) or (H,), zeros if omitted."""
        x, states, batched = self._prepare(input, [("hx", hx)])

        def op(x, h, w_ih, w_hh, b_ih, b_hh):
            if self.layer_norm:
                h_n = self._layer_norm_step(x, [h], [w_ih, w_hh, b_ih, b_hh])[0]
            else:
                h_n = ops.gru(x, h, w_ih, w_hh, b_ih, b_hh, None, None, False, self.reset_after)[1]
            return regularise.zoneout_step(self, [h], [h_n])

        return self._step(op, x, states, batched)[0]

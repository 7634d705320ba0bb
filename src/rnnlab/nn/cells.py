"""Single-step cells: torch.nn-compatible RNNCell, LSTMCell and GRUCell.

A cell is the unit a sequence layer applies at every step. These run the same ops as
the layers with a sequence of length one, so a loop of a cell equals its layer.

Shape legend: input (B, I) or (I,) unbatched; h (B, H) or (H,); c (B, H) or (H,).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnlab import ops
from rnnlab.nn import _checks

__all__ = ["GRUCell", "LSTMCell", "RNNCell"]

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class _CellBase(nn.Module):
    def __init__(self, family, input_size, hidden_size, bias, device, dtype) -> None:
        super().__init__()
        self.family = family
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
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
        """torch.nn's initialisation: every parameter ~ U(-1/√H, 1/√H)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        return s

    def _prepare(self, input: Tensor, states: list[tuple[str, Tensor | None]]):
        """Validate; return x (1, B, I), the states as (B, H) and whether input was batched."""
        _checks.tensor("input", input)
        if input.dim() not in (1, 2):
            raise ValueError(
                f"{type(self).__name__} input must be 2-D (B, I) or 1-D (I,), got shape "
                f"{tuple(input.shape)}"
            )
        _checks.same_dtype_device("input", input, self.weight_ih)
        if input.shape[-1] != self.input_size:
            raise ValueError(
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
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        super().__init__("rnn", input_size, hidden_size, bias, device, dtype)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, [("hx", hx)])
        _, h_n, _ = ops.rnn(
            x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, None, None,
            False, self.nonlinearity == "relu",
        )
        return h_n if batched else h_n.squeeze(0)


class LSTMCell(_CellBase):
    """One LSTM step: (h', c') from x and (h, c); gates i, f, g, o as in :class:`LSTM`."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__("lstm", input_size, hidden_size, bias, device, dtype)

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(f"hx for LSTMCell must be a tuple (h, c), got {type(hx).__name__}")
        h, c = (None, None) if hx is None else hx
        x, (h, c), batched = self._prepare(input, [("h", h), ("c", c)])
        _, h_n, c_n, _, _ = ops.lstm(
            x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, None, None,
            None, False,
        )
        return (h_n, c_n) if batched else (h_n.squeeze(0), c_n.squeeze(0))


class GRUCell(_CellBase):
    """One GRU step; ``reset_after=False`` gives the reset-before variant of Cho et al."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        reset_after: bool = True,
    ) -> None:
        self.reset_after = _checks.boolean("reset_after", reset_after)
        super().__init__("gru", input_size, hidden_size, bias, device, dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, [("hx", hx)])
        _, h_n, _ = ops.gru(
            x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, None, None,
            False, self.reset_after,
        )
        return h_n if batched else h_n.squeeze(0)

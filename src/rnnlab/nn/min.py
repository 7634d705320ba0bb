"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?") as rnnlab layers.

Their gates read x_t only, never h_{t-1}, so the recurrence is linear in h,
h_t = a_t ⊙ h_{t-1} + b_t, and a whole sequence runs as one GEMM and a parallel scan
(:mod:`rnnlab.ops_min`, :mod:`rnnlab.scan`) instead of T dependent steps.

The layers take torch.nn's arguments (``input_size, hidden_size, num_layers, bias,
batch_first, dropout, bidirectional``), input forms (batched, unbatched,
``PackedSequence``, ``lengths=``), state shape (h_0/h_n (L·D, B, H)) and errors, through
the machinery of :class:`rnnlab.nn.RNNBase`. Per layer and direction the parameters are
``weight_ih_l{k}[_reverse]`` (G·H, I or D·H) and ``bias_ih_l{k}[_reverse]`` (G·H,), G = 2
(z, h̃) for minGRU and 3 (f, i, h̃) for minLSTM; there is no recurrent weight. All are
initialised ~ U(-1/√H, 1/√H), as torch.nn does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab import ops_min
from rnnlab.nn import _checks
from rnnlab.nn.errors import ArgumentError
from rnnlab.nn.modules import RNNBase

__all__ = ["MinGRU", "MinLSTM"]

_OPS = {"mingru": ops_min.mingru, "minlstm": ops_min.minlstm}
_MODES = {"mingru": "MinGRU", "minlstm": "MinLSTM"}


class MinRNNBase(RNNBase):
    """Shared machinery of :class:`MinGRU` and :class:`MinLSTM` (each names its ``family``).

    ``parallel_scan=False`` (rnnlab extension) runs the recurrence as a loop over the
    steps instead of the parallel scan: the same function, for comparison.
    """

    family: str  # "mingru" or "minlstm", set by the subclass

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        parallel_scan: bool = True,
        check_finite: bool = False,
    ) -> None:
        # RNNBase's constructor builds the classic cells' recurrent weights; a min cell
        # has none, so this one sets the same attributes with its own parameters.
        nn.Module.__init__(self)
        self._check_layer_arguments(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        )
        self.parallel_scan = _checks.boolean("parallel_scan", parallel_scan)
        self.check_finite = _checks.boolean("check_finite", check_finite)
        self.proj_size = 0
        self.nonlinearity = "tanh"
        self.reset_after = True
        self.forget_bias = None
        self._warn_unused_dropout(stacklevel=3)
        gate_size = ops_min.GATE_BLOCKS[self.family] * self.hidden_size

        def shapes(layer_in: int) -> list[tuple[str, tuple[int, ...]]]:
            named = [("weight_ih", (gate_size, layer_in))]
            if self.bias:
                named.append(("bias_ih", (gate_size,)))
            return named

        self._make_parameters(shapes, self.hidden_size, device, dtype)

    @property
    def mode(self) -> str:
        """``"MinGRU"`` or ``"MinLSTM"``."""
        return _MODES[self.family]

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (", parallel_scan=False" if not self.parallel_scan else "")

    def step(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step for streaming: input (B, I) or unbatched (I,), hx h_{t-1} as the layer
        takes it ((L, B, H) or (L, H); zeros if None). Returns (y_t (B, H), h_t (L, B, H)),
        unbatched without B; feed h_t back as the next call's hx."""
        if self.bidirectional:
            raise ArgumentError(
                "step() advances a unidirectional layer; this layer is bidirectional (its "
                "reverse direction reads the future): call it on the whole sequence"
            )
        _checks.tensor("input", input)
        if input.dim() not in (1, 2):
            raise ArgumentError(
                f"step() takes one step of input, (B, I) or unbatched (I,), got a "
                f"{input.dim()}-D tensor of shape {tuple(input.shape)}"
            )
        one_step = input.unsqueeze(1 if self.batch_first and input.dim() == 2 else 0)
        output, h = self(one_step, hx)
        return output.squeeze(1 if self.batch_first and input.dim() == 2 else 0), h

    def _run_direction(self, x, h0, c0, weights, lengths, probe, reverse, infer=False):
        """One op call: returns (y, h_n, None, {gate name: (T, B, H)}); the gates are
        derived from the pre-activations only while recording."""
        w_ih = weights[0]
        b_ih = weights[1] if self.bias else None
        y, h, u = _OPS[self.family](
            x, h0, w_ih, b_ih, lengths, probe, reverse, self.parallel_scan
        )
        gates = {} if self._recording is None else _gates(self.family, u, lengths)
        return y, h, None, gates


def _gates(family: str, u: Tensor, lengths: Tensor | None) -> dict[str, Tensor]:
    """The reference's gates from the pre-activations, 0 at padding steps: minGRU z, h̃;
    minLSTM f, i, h̃ (and f' = f/(f+i), the share of h_{t-1} kept)."""
    u = u.detach()
    if family == "mingru":
        u_z, h_tilde = u.chunk(2, dim=-1)
        gates = {"z": torch.sigmoid(u_z), "h_tilde": h_tilde}
    else:
        u_f, u_i, h_tilde = u.chunk(3, dim=-1)
        d = nn.functional.logsigmoid(u_f) - nn.functional.logsigmoid(u_i)
        gates = {"f": torch.sigmoid(u_f), "i": torch.sigmoid(u_i), "f_norm": torch.sigmoid(d),
                 "h_tilde": h_tilde}
    if lengths is None:
        return gates
    valid = (torch.arange(u.shape[0], device=u.device)[:, None] < lengths[None, :])[..., None]
    return {name: torch.where(valid, g, 0.0) for name, g in gates.items()}


class MinGRU(MinRNNBase):
    r"""minGRU (Feng et al. 2024): a GRU whose gates read only x_t, trained by a scan.

    Per layer and direction, at every step t (H = hidden_size):

        z_t = σ(W_z x_t + b_z)                          update gate        (B, H)
        h̃_t = W_h x_t + b_h                             candidate (linear)
        h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

    ``weight_ih_l{k}`` (2H, I) stacks z, h̃. Recording (:func:`rnnlab.nn.record`) shows
    ``z`` and ``h_tilde``.
    """

    family = "mingru"


class MinLSTM(MinRNNBase):
    r"""minLSTM (Feng et al. 2024): an LSTM whose gates read only x_t, with normalised
    forget and input gates and no cell state apart from h, trained by a scan.

    Per layer and direction, at every step t (H = hidden_size):

        f_t = σ(W_f x_t + b_f)      i_t = σ(W_i x_t + b_i)       gates        (B, H)
        f'_t = f_t / (f_t + i_t)    i'_t = i_t / (f_t + i_t)     normalised
        h̃_t = W_h x_t + b_h                                      candidate (linear)
        h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

    ``weight_ih_l{k}`` (3H, I) stacks f, i, h̃. Recording shows ``f``, ``i``, ``f_norm``
    (f') and ``h_tilde``. The state is h alone: h_0/h_n (L·D, B, H), not an (h, c) pair.
    """

    family = "minlstm"

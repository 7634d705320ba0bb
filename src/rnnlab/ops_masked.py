"""The masked ops: LSTM and GRU with recurrent dropout and zoneout, masks as inputs.

``rnnlab::lstm_masked`` and ``rnnlab::gru_masked`` are the ops of :mod:`rnnlab.ops`
with three more optional inputs, the masks of
:class:`rnnlab.backends.contract.Masks` (symbols of
:mod:`rnnlab.reference.lstm_masked` and :mod:`rnnlab.reference.gru_masked`)::

    lstm_masked(x, h0, c0, w_ih, w_hh, b_ih?, b_hh?, w_hr?, drop_h?, keep_h?, keep_c?,
                lengths?, h_probe?, reverse) -> y, h_n, c_n, gates, c, c_tilde
    gru_masked (x, h0, w_ih, w_hh, b_ih?, b_hh?, drop_h?, keep_h?, lengths?, h_probe?,
                reverse, reset_after) -> y, h_n, gates

drop_h (B, P) multiplies h_{t-1} inside the recurrent product, keep_h (T, B, P) and
keep_c (T, B, H) are the zoneout shares (0/1 in training, p in eval). The masks are
constants (no gradient); the layers draw them (:mod:`rnnlab.nn.regularise`), so a seed
replays them and the reference can be handed the same arrays. They are separate ops so
that the plain ops, and their fused kernels, stay exactly as they are. The backends
serve them through the ``masked_lstm`` / ``masked_gru`` families of the contract: fused
kernels on the cpu backend (Numba) and the gpu backend (Triton), the portable kernels
elsewhere.

Backward is a second custom op (the hand-derived BPTT of the reference). Double
backward recomputes the forward with the portable kernels, which are written out of
place for that (:func:`rnnlab.backends.differentiable.masked_lstm_outputs`), and
differentiates it, as :mod:`rnnlab.ops` does.
"""

from __future__ import annotations

from torch import Tensor

from rnnlab.backends import differentiable
from rnnlab.backends.contract import (
    GRUForward,
    GRUGrads,
    GRUSaved,
    GRUWeights,
    LSTMGrads,
    LSTMState,
    LSTMWeights,
    MaskedLSTMForward,
    MaskedLSTMSaved,
    Masks,
    Sequence,
)
from rnnlab.ops import _backend, _define_family, _gru_shapes, _lstm_shapes

__all__ = ["gru_masked", "gru_masked_backward", "lstm_masked", "lstm_masked_backward"]


# --------------------------------------------------------------------------- LSTM


def _lstm_entry(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
    b_hh: Tensor | None, w_hr: Tensor | None, drop_h: Tensor | None, keep_h: Tensor | None,
    keep_c: Tensor | None, lengths: Tensor | None, h_probe: Tensor | None, reverse: bool,
):
    """Masked LSTM over a sequence: y (T,B,P), h_n (B,P), c_n (B,H), gates (T,B,4H),
    c (T,B,H) the cell states, c_tilde (T,B,H) the candidates before zoneout."""
    w, seq = LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr), Sequence(x, lengths, reverse)
    return w, seq, LSTMState(h0, c0), Masks(drop_h, keep_h, keep_c), h_probe


def _lstm_backward_entry(
    dy: Tensor, dh_n: Tensor, dc_n: Tensor, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor,
    w_hh: Tensor, w_hr: Tensor | None, drop_h: Tensor | None, keep_h: Tensor | None,
    keep_c: Tensor | None, y: Tensor, gates: Tensor, c: Tensor, c_tilde: Tensor,
    lengths: Tensor | None, reverse: bool, need_dh: bool,
    need_dx: bool,
):
    w, seq = LSTMWeights(w_ih, w_hh, None, None, w_hr), Sequence(x, lengths, reverse)
    masks, saved = Masks(drop_h, keep_h, keep_c), MaskedLSTMSaved(y, gates, c, c_tilde)
    return w, seq, LSTMState(h0, c0), masks, saved, dy, LSTMState(dh_n, dc_n), need_dh, need_dx


def _lstm_shapes_masked(named) -> tuple[tuple, ...]:
    """The LSTM's outputs and c_tilde, shaped as c."""
    shapes = _lstm_shapes(named)
    return (*shapes, shapes[-1])


lstm_masked, lstm_masked_backward = _define_family(
    "lstm_masked", lambda x: _backend(x).masked_lstm, _lstm_entry, _lstm_backward_entry,
    outputs=MaskedLSTMForward, grads=LSTMGrads, shapes=_lstm_shapes_masked,
    outputs_of=differentiable.masked_lstm_outputs, infer=False,
)


# --------------------------------------------------------------------------- GRU


def _gru_entry(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
    b_hh: Tensor | None, drop_h: Tensor | None, keep_h: Tensor | None,
    lengths: Tensor | None, h_probe: Tensor | None, reverse: bool, reset_after: bool,
):
    """Masked GRU over a sequence: y (T,B,H), h_n (B,H), gates (T,B,4H) = r, z, n, hn."""
    w, seq = GRUWeights(w_ih, w_hh, b_ih, b_hh), Sequence(x, lengths, reverse)
    return w, seq, h0, Masks(drop_h, keep_h, None), h_probe, reset_after


def _gru_backward_entry(
    dy: Tensor, dh_n: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
    drop_h: Tensor | None, keep_h: Tensor | None, y: Tensor, gates: Tensor,
    lengths: Tensor | None, reverse: bool, reset_after: bool, need_dh: bool,
    need_dx: bool,
):
    w, seq = GRUWeights(w_ih, w_hh, None, None), Sequence(x, lengths, reverse)
    masks, saved = Masks(drop_h, keep_h, None), GRUSaved(y, gates)
    return w, seq, h0, masks, saved, dy, dh_n, reset_after, need_dh, need_dx


gru_masked, gru_masked_backward = _define_family(
    "gru_masked", lambda x: _backend(x).masked_gru, _gru_entry, _gru_backward_entry,
    outputs=GRUForward, grads=GRUGrads, shapes=_gru_shapes,
    outputs_of=differentiable.masked_gru_outputs, infer=False,
)

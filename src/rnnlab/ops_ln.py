"""The layer-normalised cells' custom ops: ``rnnlab::lnlstm``, ``lnlstm_backward``,
``lnlstm_infer`` (the equations: :mod:`rnnlab.reference.lnlstm`) and ``rnnlab::lngru``,
``lngru_backward``, ``lngru_infer`` (:mod:`rnnlab.reference.lngru`).

Like the classic ops of :mod:`rnnlab.ops` (whose conventions they keep: one direction of
one layer over the whole sequence, time-major; the saved activations are outputs; the
probe; double backward by a differentiable recomputation), dispatched to the backend's
``lnlstm`` and ``lngru`` families (:class:`rnnlab.backends.contract.LNLSTMKernels`,
:class:`~rnnlab.backends.contract.LNGRUKernels`)::

    lnlstm(x, h0, c0, w_ih (4H, I), w_hh (4H, H), b_ih?, b_hh?, gamma_ih (4H,),
           gamma_hh (4H,), gamma_c (H,), beta_c?, lengths?, h_probe?, reverse)
        -> y (T,B,H), h_n (B,H), c_n (B,H), gates (T,B,4H) activated i, f, g, o, c (T,B,H)
    lngru(x, h0, w_ih (3H, I), w_hh (3H, H), b_ih?, b_hh?, gamma_ih (3H,), gamma_hh (3H,),
          lengths?, h_probe?, reverse)
        -> y (T,B,H), h_n (B,H), gates (T,B,4H) r, z, n and hn

The saved activations have the LSTM's and the GRU's layouts, so recording reads them as
it reads theirs. ONNX's LSTM and GRU have no normalisation; :mod:`rnnlab.export.onnx`
translates these ops to standard operators and a Scan.
"""

from __future__ import annotations

from torch import Tensor

from rnnlab.backends import differentiable
from rnnlab.backends.contract import (
    GRUForward,
    GRUSaved,
    LNGRUGrads,
    LNGRUWeights,
    LNLSTMGrads,
    LNLSTMWeights,
    LSTMForward,
    LSTMSaved,
    LSTMState,
    Sequence,
)
from rnnlab.ops import _backend, _define_family, _gru_shapes, _lstm_shapes

__all__ = [
    "lngru", "lngru_backward", "lngru_infer", "lnlstm", "lnlstm_backward", "lnlstm_infer",
]


def _lnlstm_entry(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
    b_hh: Tensor | None, gamma_ih: Tensor, gamma_hh: Tensor, gamma_c: Tensor,
    beta_c: Tensor | None, lengths: Tensor | None, h_probe: Tensor | None, reverse: bool,
):
    """Layer-normalised LSTM over a sequence: returns y (T,B,H), h_n (B,H), c_n (B,H),
    gates (T,B,4H) activated in the order i, f, g, o, and c (T,B,H) every step's cell state."""
    w = LNLSTMWeights(w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, gamma_c, beta_c)
    return w, Sequence(x, lengths, reverse), LSTMState(h0, c0), h_probe


def _lnlstm_backward_entry(
    dy: Tensor, dh_n: Tensor, dc_n: Tensor, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor,
    w_hh: Tensor, gamma_ih: Tensor, gamma_hh: Tensor, gamma_c: Tensor, beta_c: Tensor | None,
    y: Tensor, gates: Tensor, c: Tensor, lengths: Tensor | None, reverse: bool, need_dh: bool,
    need_dx: bool,
):
    w = LNLSTMWeights(w_ih, w_hh, None, None, gamma_ih, gamma_hh, gamma_c, beta_c)
    seq, saved = Sequence(x, lengths, reverse), LSTMSaved(y, gates, c)
    return w, seq, LSTMState(h0, c0), saved, dy, LSTMState(dh_n, dc_n), need_dh, need_dx


lnlstm, lnlstm_backward, lnlstm_infer = _define_family(
    "lnlstm", lambda x: _backend(x).lnlstm, _lnlstm_entry, _lnlstm_backward_entry,
    outputs=LSTMForward, grads=LNLSTMGrads, shapes=_lstm_shapes,
    outputs_of=differentiable.lnlstm_outputs,
)


# --------------------------------------------------------------------------- GRU


def _lngru_entry(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
    b_hh: Tensor | None, gamma_ih: Tensor, gamma_hh: Tensor, lengths: Tensor | None,
    h_probe: Tensor | None, reverse: bool,
):
    """Layer-normalised GRU over a sequence: returns y (T,B,H), h_n (B,H) and gates
    (T,B,4H) = r, z, n and the candidate's recurrent term hn."""
    w = LNGRUWeights(w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh)
    return w, Sequence(x, lengths, reverse), h0, h_probe


def _lngru_backward_entry(
    dy: Tensor, dh_n: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
    gamma_ih: Tensor, gamma_hh: Tensor, y: Tensor, gates: Tensor, lengths: Tensor | None,
    reverse: bool, need_dh: bool,
    need_dx: bool,
):
    w = LNGRUWeights(w_ih, w_hh, None, None, gamma_ih, gamma_hh)
    return w, Sequence(x, lengths, reverse), h0, GRUSaved(y, gates), dy, dh_n, need_dh, need_dx


lngru, lngru_backward, lngru_infer = _define_family(
    "lngru", lambda x: _backend(x).lngru, _lngru_entry, _lngru_backward_entry,
    outputs=GRUForward, grads=LNGRUGrads, shapes=_gru_shapes,
    outputs_of=differentiable.lngru_outputs,
)

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
it reads theirs. No ONNX translation: ONNX's LSTM and GRU have no normalisation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.backends import differentiable
from rnnlab.backends.contract import (
    GRUSaved,
    LNGRUWeights,
    LNLSTMWeights,
    LSTMSaved,
    LSTMState,
    Sequence,
)
from rnnlab.ops import _backend, _if_wanted, _recomputed

__all__ = [
    "lngru", "lngru_backward", "lngru_infer", "lnlstm", "lnlstm_backward", "lnlstm_infer",
]


@torch.library.custom_op("rnnlab::lnlstm", mutates_args=())
def lnlstm(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    gamma_ih: Tensor,
    gamma_hh: Tensor,
    gamma_c: Tensor,
    beta_c: Tensor | None,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Layer-normalised LSTM over a sequence: returns y (T,B,H), h_n (B,H), c_n (B,H),
    gates (T,B,4H) activated in the order i, f, g, o, and c (T,B,H) every step's cell state."""
    args = _lnlstm_entry(x, h0, c0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, gamma_c, beta_c,
                         lengths, h_probe, reverse)
    return tuple(_backend(x).lnlstm.forward(*args))


def _lnlstm_entry(x, h0, c0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, gamma_c, beta_c, lengths,
                  h_probe, reverse):
    """The arguments of the contract's ``forward`` (its bundles) from those of :func:`lnlstm`."""
    w = LNLSTMWeights(w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, gamma_c, beta_c)
    return w, Sequence(x, lengths, reverse), LSTMState(h0, c0), h_probe


@lnlstm.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, gamma_c, beta_c, lengths, h_probe,
      reverse):
    T, B, H = x.shape[0], x.shape[1], c0.shape[-1]
    return (
        x.new_empty(T, B, H),
        x.new_empty(B, H),
        x.new_empty(B, H),
        x.new_empty(T, B, 4 * H),
        x.new_empty(T, B, H),
    )


@torch.library.custom_op("rnnlab::lnlstm_backward", mutates_args=())
def lnlstm_backward(
    dy: Tensor,
    dh_n: Tensor,
    dc_n: Tensor,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    gamma_ih: Tensor,
    gamma_hh: Tensor,
    gamma_c: Tensor,
    beta_c: Tensor | None,
    y: Tensor,
    gates: Tensor,
    c: Tensor,
    lengths: Tensor | None,
    reverse: bool,
    need_dh: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT of :func:`lnlstm`: dx, dh0, dc0, dW_ih, dW_hh, db, dγ_ih, dγ_hh, dγ_c, dβ_c,
    dh (empty unless need_dh)."""
    w = LNLSTMWeights(w_ih, w_hh, None, None, gamma_ih, gamma_hh, gamma_c, beta_c)
    seq, saved = Sequence(x, lengths, reverse), LSTMSaved(y, gates, c)
    d_state = LSTMState(dh_n, dc_n)
    return tuple(
        _backend(x).lnlstm.backward(w, seq, LSTMState(h0, c0), saved, dy, d_state, need_dh)
    )


@lnlstm_backward.register_fake
def _(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, gamma_ih, gamma_hh, gamma_c, beta_c, y, gates, c,
      lengths, reverse, need_dh):
    return (
        torch.empty_like(x),
        torch.empty_like(h0),
        torch.empty_like(c0),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        w_hh.new_empty(w_hh.shape[0]),
        torch.empty_like(gamma_ih),
        torch.empty_like(gamma_hh),
        torch.empty_like(gamma_c),
        torch.empty_like(gamma_c),
        torch.empty_like(y) if need_dh else y.new_empty(0),
    )


def _setup(ctx, inputs, output):
    *tensors, reverse = inputs
    _, _, _, gates, c = output
    ctx.mark_non_differentiable(gates, c)
    ctx.save_for_backward(*tensors, output[0], gates, c)
    ctx.reverse = reverse


def _grad(ctx, dy, dh_n, dc_n, _dgates, _dc):
    *tensors, y, gates, c = ctx.saved_tensors
    (x, h0, c0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, gamma_c, beta_c, lengths,
     h_probe) = tensors
    if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
        inputs = (*tensors, ctx.reverse)
        return _recomputed(ctx, differentiable.lnlstm_outputs, _lnlstm_entry, inputs,
                           (dy, dh_n, dc_n))
    has_probe = h_probe is not None
    dx, dh0, dc0, dw_ih, dw_hh, db, dgamma_ih, dgamma_hh, dgamma_c, dbeta_c, dh = (
        lnlstm_backward(
            dy.contiguous(), dh_n.contiguous(), dc_n.contiguous(), x, h0, c0, w_ih, w_hh,
            gamma_ih, gamma_hh, gamma_c, beta_c, y, gates, c, lengths, ctx.reverse, has_probe,
        )
    )
    return (
        dx,
        dh0,
        dc0,
        dw_ih,
        dw_hh,
        _if_wanted(db, b_ih is not None),
        _if_wanted(db.clone(), b_hh is not None),  # a separate tensor: .grad must not alias
        dgamma_ih,
        dgamma_hh,
        dgamma_c,
        _if_wanted(dbeta_c, beta_c is not None),
        None,
        _if_wanted(dh, has_probe),
        None,
    )


lnlstm.register_autograd(_grad, setup_context=_setup)


@torch.library.custom_op("rnnlab::lnlstm_infer", mutates_args=())
def lnlstm_infer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    gamma_ih: Tensor,
    gamma_hh: Tensor,
    gamma_c: Tensor,
    beta_c: Tensor | None,
    lengths: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`lnlstm` without saved activations: returns (y (T,B,H), h_n (B,H), c_n (B,H))."""
    w = LNLSTMWeights(w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, gamma_c, beta_c)
    seq = Sequence(x, lengths, reverse)
    return tuple(_backend(x).lnlstm.infer(w, seq, LSTMState(h0, c0)))


@lnlstm_infer.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, gamma_c, beta_c, lengths, reverse):
    T, B, H = x.shape[0], x.shape[1], c0.shape[-1]
    return x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(B, H)


# --------------------------------------------------------------------------- GRU


@torch.library.custom_op("rnnlab::lngru", mutates_args=())
def lngru(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    gamma_ih: Tensor,
    gamma_hh: Tensor,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Layer-normalised GRU over a sequence: returns y (T,B,H), h_n (B,H) and gates
    (T,B,4H) = r, z, n and the candidate's recurrent term hn."""
    args = _lngru_entry(x, h0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, lengths, h_probe,
                        reverse)
    return tuple(_backend(x).lngru.forward(*args))


def _lngru_entry(x, h0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, lengths, h_probe, reverse):
    """The arguments of the contract's ``forward`` (its bundles) from those of :func:`lngru`."""
    w = LNGRUWeights(w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh)
    return w, Sequence(x, lengths, reverse), h0, h_probe


@lngru.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, lengths, h_probe, reverse):
    T, B, H = x.shape[0], x.shape[1], h0.shape[-1]
    return x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(T, B, 4 * H)


@torch.library.custom_op("rnnlab::lngru_backward", mutates_args=())
def lngru_backward(
    dy: Tensor,
    dh_n: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    gamma_ih: Tensor,
    gamma_hh: Tensor,
    y: Tensor,
    gates: Tensor,
    lengths: Tensor | None,
    reverse: bool,
    need_dh: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT of :func:`lngru`: dx, dh0, dW_ih, dW_hh, db_ih, db_hh, dγ_ih, dγ_hh, dh (empty
    unless need_dh)."""
    w = LNGRUWeights(w_ih, w_hh, None, None, gamma_ih, gamma_hh)
    seq, saved = Sequence(x, lengths, reverse), GRUSaved(y, gates)
    return tuple(_backend(x).lngru.backward(w, seq, h0, saved, dy, dh_n, need_dh))


@lngru_backward.register_fake
def _(dy, dh_n, x, h0, w_ih, w_hh, gamma_ih, gamma_hh, y, gates, lengths, reverse, need_dh):
    G = w_hh.shape[0]
    return (
        torch.empty_like(x),
        torch.empty_like(h0),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        w_hh.new_empty(G),
        w_hh.new_empty(G),
        torch.empty_like(gamma_ih),
        torch.empty_like(gamma_hh),
        torch.empty_like(y) if need_dh else y.new_empty(0),
    )


def _gru_setup(ctx, inputs, output):
    *tensors, reverse = inputs
    y, _, gates = output
    ctx.mark_non_differentiable(gates)
    ctx.save_for_backward(*tensors, y, gates)
    ctx.reverse = reverse


def _gru_grad(ctx, dy, dh_n, _dgates):
    *tensors, y, gates = ctx.saved_tensors
    x, h0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, lengths, h_probe = tensors
    if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
        inputs = (*tensors, ctx.reverse)
        return _recomputed(ctx, differentiable.lngru_outputs, _lngru_entry, inputs, (dy, dh_n))
    has_probe = h_probe is not None
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgamma_ih, dgamma_hh, dh = lngru_backward(
        dy.contiguous(), dh_n.contiguous(), x, h0, w_ih, w_hh, gamma_ih, gamma_hh, y, gates,
        lengths, ctx.reverse, has_probe,
    )
    return (
        dx,
        dh0,
        dw_ih,
        dw_hh,
        _if_wanted(db_ih, b_ih is not None),
        _if_wanted(db_hh, b_hh is not None),
        dgamma_ih,
        dgamma_hh,
        None,
        _if_wanted(dh, has_probe),
        None,
    )


lngru.register_autograd(_gru_grad, setup_context=_gru_setup)


@torch.library.custom_op("rnnlab::lngru_infer", mutates_args=())
def lngru_infer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    gamma_ih: Tensor,
    gamma_hh: Tensor,
    lengths: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor]:
    """:func:`lngru` without saved activations: returns (y (T,B,H), h_n (B,H))."""
    w = LNGRUWeights(w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh)
    return tuple(_backend(x).lngru.infer(w, Sequence(x, lengths, reverse), h0))


@lngru_infer.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, lengths, reverse):
    T, B, H = x.shape[0], x.shape[1], h0.shape[-1]
    return x.new_empty(T, B, H), x.new_empty(B, H)

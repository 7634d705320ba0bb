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
kernels on the cpu backend, the portable kernels elsewhere.

Backward is a second custom op (the hand-derived BPTT of the reference). Double
backward recomputes the forward with the portable kernels, which are written out of
place for that, and differentiates it, as :mod:`rnnlab.ops` does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab import backends
from rnnlab.backends.contract import (
    GRUSaved,
    GRUWeights,
    LSTMState,
    LSTMWeights,
    MaskedLSTMSaved,
    Masks,
    Sequence,
)
from rnnlab.backends.portable.masked import PortableMaskedGRU, PortableMaskedLSTM
from rnnlab.ops import _dense, _if_wanted, _keep_grads_unmaterialised, _recomputed

__all__ = ["gru_masked", "gru_masked_backward", "lstm_masked", "lstm_masked_backward"]


# --------------------------------------------------------------------------- LSTM


@torch.library.custom_op("rnnlab::lstm_masked", mutates_args=())
def lstm_masked(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    drop_h: Tensor | None,
    keep_h: Tensor | None,
    keep_c: Tensor | None,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Masked LSTM over a sequence: y (T,B,P), h_n (B,P), c_n (B,H), gates (T,B,4H),
    c (T,B,H) the cell states, c_tilde (T,B,H) the candidates before zoneout."""
    args = _lstm_entry(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, drop_h, keep_h, keep_c, lengths,
                       h_probe, reverse)
    return tuple(backends.select(x.device, x.dtype).masked_lstm.forward(*args))


def _lstm_entry(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, drop_h, keep_h, keep_c, lengths, h_probe,
                reverse):
    """The arguments of the contract's ``forward`` (its bundles) from those of
    :func:`lstm_masked`."""
    w, seq = LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr), Sequence(x, lengths, reverse)
    return w, seq, LSTMState(h0, c0), Masks(drop_h, keep_h, keep_c), h_probe


@lstm_masked.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, drop_h, keep_h, keep_c, lengths, h_probe,
      reverse):
    T, B = x.shape[0], x.shape[1]
    H, P = c0.shape[-1], h0.shape[-1]
    return (x.new_empty(T, B, P), x.new_empty(B, P), x.new_empty(B, H),
            x.new_empty(T, B, 4 * H), x.new_empty(T, B, H), x.new_empty(T, B, H))


@torch.library.custom_op("rnnlab::lstm_masked_backward", mutates_args=())
def lstm_masked_backward(
    dy: Tensor,
    dh_n: Tensor,
    dc_n: Tensor,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    drop_h: Tensor | None,
    keep_h: Tensor | None,
    keep_c: Tensor | None,
    y: Tensor,
    gates: Tensor,
    c: Tensor,
    c_tilde: Tensor,
    lengths: Tensor | None,
    reverse: bool,
    need_dh: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT of :func:`lstm_masked`: dx, dh0, dc0, dW_ih, dW_hh, db, dW_hr (empty without
    projection), dh (empty unless need_dh)."""
    w, seq = LSTMWeights(w_ih, w_hh, None, None, w_hr), Sequence(x, lengths, reverse)
    masks, saved = Masks(drop_h, keep_h, keep_c), MaskedLSTMSaved(y, gates, c, c_tilde)
    kernels = backends.select(x.device, x.dtype).masked_lstm
    return tuple(kernels.backward(
        w, seq, LSTMState(h0, c0), masks, saved, dy, LSTMState(dh_n, dc_n), need_dh
    ))


@lstm_masked_backward.register_fake
def _(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, w_hr, drop_h, keep_h, keep_c, y, gates, c,
      c_tilde, lengths, reverse, need_dh):
    return (
        torch.empty_like(x), torch.empty_like(h0), torch.empty_like(c0), torch.empty_like(w_ih),
        torch.empty_like(w_hh), w_hh.new_empty(w_hh.shape[0]),
        torch.empty_like(w_hr) if w_hr is not None else y.new_empty(0),
        torch.empty_like(y) if need_dh else y.new_empty(0),
    )


def _lstm_setup(ctx, inputs, output):
    ctx.mark_non_differentiable(*output[3:])
    _keep_grads_unmaterialised(ctx)
    ctx.save_for_backward(*inputs[:13], output[0], *output[3:])
    ctx.reverse = inputs[13]


def _lstm_outputs(*args):
    """The differentiable outputs (y, h_n, c_n) recomputed with torch ops (the portable
    forward is written out of place)."""
    forward = PortableMaskedLSTM().forward(*args)
    return forward.y, forward.h_n, forward.c_n


def _lstm_grad(ctx, dy, dh_n, dc_n, *_saved_grads):
    (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, drop_h, keep_h, keep_c, lengths, h_probe,
     y, gates, c, c_tilde) = ctx.saved_tensors
    dy, dh_n, dc_n = _dense(dy, y), _dense(dh_n, h0), _dense(dc_n, c0)
    if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
        inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, drop_h, keep_h, keep_c, lengths,
                  h_probe, ctx.reverse)
        return _recomputed(ctx, _lstm_outputs, _lstm_entry, inputs, (dy, dh_n, dc_n))
    has_probe = h_probe is not None
    dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, dh = lstm_masked_backward(
        dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, w_hr, drop_h, keep_h, keep_c, y, gates, c,
        c_tilde, lengths, ctx.reverse, has_probe,
    )
    return (
        dx, dh0, dc0, dw_ih, dw_hh,
        _if_wanted(db, b_ih is not None),
        _if_wanted(db.clone(), b_hh is not None),  # a separate tensor: .grad must not alias
        _if_wanted(dw_hr, w_hr is not None),
        None, None, None, None,
        _if_wanted(dh, has_probe),
        None,
    )


lstm_masked.register_autograd(_lstm_grad, setup_context=_lstm_setup)


# --------------------------------------------------------------------------- GRU


@torch.library.custom_op("rnnlab::gru_masked", mutates_args=())
def gru_masked(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    drop_h: Tensor | None,
    keep_h: Tensor | None,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
    reset_after: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Masked GRU over a sequence: y (T,B,H), h_n (B,H), gates (T,B,4H) = r, z, n, hn."""
    args = _gru_entry(x, h0, w_ih, w_hh, b_ih, b_hh, drop_h, keep_h, lengths, h_probe, reverse,
                      reset_after)
    return tuple(backends.select(x.device, x.dtype).masked_gru.forward(*args))


def _gru_entry(x, h0, w_ih, w_hh, b_ih, b_hh, drop_h, keep_h, lengths, h_probe, reverse,
               reset_after):
    """The arguments of the contract's ``forward`` (its bundles) from those of
    :func:`gru_masked`."""
    w, seq = GRUWeights(w_ih, w_hh, b_ih, b_hh), Sequence(x, lengths, reverse)
    return w, seq, h0, Masks(drop_h, keep_h, None), h_probe, reset_after


@gru_masked.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, drop_h, keep_h, lengths, h_probe, reverse, reset_after):
    T, B, H = x.shape[0], x.shape[1], h0.shape[-1]
    return x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(T, B, 4 * H)


@torch.library.custom_op("rnnlab::gru_masked_backward", mutates_args=())
def gru_masked_backward(
    dy: Tensor,
    dh_n: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    drop_h: Tensor | None,
    keep_h: Tensor | None,
    y: Tensor,
    gates: Tensor,
    lengths: Tensor | None,
    reverse: bool,
    reset_after: bool,
    need_dh: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT of :func:`gru_masked`: dx, dh0, dW_ih, dW_hh, db_ih, db_hh, dh (empty unless
    need_dh)."""
    w, seq = GRUWeights(w_ih, w_hh, None, None), Sequence(x, lengths, reverse)
    kernels = backends.select(x.device, x.dtype).masked_gru
    return tuple(kernels.backward(
        w, seq, h0, Masks(drop_h, keep_h, None), GRUSaved(y, gates), dy, dh_n, reset_after,
        need_dh,
    ))


@gru_masked_backward.register_fake
def _(dy, dh_n, x, h0, w_ih, w_hh, drop_h, keep_h, y, gates, lengths, reverse, reset_after,
      need_dh):
    G = w_hh.shape[0]
    return (
        torch.empty_like(x), torch.empty_like(h0), torch.empty_like(w_ih), torch.empty_like(w_hh),
        w_hh.new_empty(G), w_hh.new_empty(G),
        torch.empty_like(y) if need_dh else y.new_empty(0),
    )


def _gru_setup(ctx, inputs, output):
    ctx.mark_non_differentiable(output[2])
    _keep_grads_unmaterialised(ctx)
    ctx.save_for_backward(*inputs[:10], output[0], output[2])
    ctx.flags = inputs[10:]


def _gru_outputs(*args):
    """The differentiable outputs (y, h_n) recomputed with torch ops."""
    forward = PortableMaskedGRU().forward(*args)
    return forward.y, forward.h_n


def _gru_grad(ctx, dy, dh_n, _dgates):
    x, h0, w_ih, w_hh, b_ih, b_hh, drop_h, keep_h, lengths, h_probe, y, gates = ctx.saved_tensors
    reverse, reset_after = ctx.flags
    dy, dh_n = _dense(dy, y), _dense(dh_n, h0)
    if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
        inputs = (x, h0, w_ih, w_hh, b_ih, b_hh, drop_h, keep_h, lengths, h_probe, reverse,
                  reset_after)
        return _recomputed(ctx, _gru_outputs, _gru_entry, inputs, (dy, dh_n))
    has_probe = h_probe is not None
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dh = gru_masked_backward(
        dy, dh_n, x, h0, w_ih, w_hh, drop_h, keep_h, y, gates, lengths, reverse, reset_after,
        has_probe,
    )
    return (
        dx, dh0, dw_ih, dw_hh,
        _if_wanted(db_ih, b_ih is not None),
        _if_wanted(db_hh, b_hh is not None),
        None, None, None,
        _if_wanted(dh, has_probe),
        None, None,
    )


gru_masked.register_autograd(_gru_grad, setup_context=_gru_setup)

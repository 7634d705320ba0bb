"""Double backward: the recurrences written with out-of-place torch operations only,
and the gradient of a recomputation as a differentiable graph.

The forward functions take the contract's bundles (:mod:`rnnlab.backends.contract`) as a
family's ``forward`` entry point does, and follow the same equations (those of
:mod:`rnnlab.reference`), but every step builds new tensors instead of writing into
preallocated buffers, so autograd can differentiate the result to any order. They return
the op's differentiable outputs only: y and the final state(s). The ops' autograd
formulas (:func:`rnnlab.ops._define_family`, for every family) call
:func:`recomputed_grads` only when a backward pass is itself being recorded
(``create_graph=True``: double backward, gradient penalties, Hessian-vector products);
the first-order backward never uses them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.backends._host import advance, sum_bias, time_steps, valid_mask, zero_padding
from rnnlab.backends._layer_norm import EPS
from rnnlab.backends.contract import (
    GRUWeights,
    LNGRUWeights,
    LNLSTMWeights,
    LSTMState,
    LSTMWeights,
    Masks,
    RNNWeights,
    Sequence,
)
from rnnlab.backends.portable.masked import PortableMaskedGRU, PortableMaskedLSTM


def recomputed_grads(
    needs_input_grad: tuple[bool, ...], outputs_of: Callable, inputs: tuple,
    grads: tuple[Tensor, ...],
) -> tuple:
    """An op's input gradients as a differentiable graph, for a recorded backward.

    ``outputs_of`` recomputes the op's differentiable outputs from ``inputs`` (the op's
    arguments, in order; ``needs_input_grad`` is autograd's flag for each); ``grads`` are
    the gradients of those outputs. Each input that needs a gradient enters the
    recomputation as a fresh view, so the gradient is this call's own (an input that
    depends on the same weights, as a cell's state in a loop does, is not followed back)
    and the graph still reaches the input. Returns one entry per input.
    """
    wanted = [
        isinstance(a, Tensor) and needed and a.requires_grad
        for a, needed in zip(inputs, needs_input_grad, strict=True)
    ]
    views = [
        a.view_as(a) if want else a.detach() if isinstance(a, Tensor) else a
        for a, want in zip(inputs, wanted, strict=True)
    ]
    with torch.enable_grad():
        outputs = outputs_of(*views)
    found = iter(
        torch.autograd.grad(
            outputs,
            [v for v, want in zip(views, wanted, strict=True) if want],
            grads,
            create_graph=True,
            materialize_grads=True,
        )
    )
    return tuple(next(found) if want else None for want in wanted)


def _projected(seq: Sequence, w_ih: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The input projection of every step (padding zeroed first) and the step mask."""
    valid = valid_mask(seq.lengths, seq.x.shape[0])
    return F.linear(zero_padding(seq.x, valid), w_ih, bias), valid


def _in_time_order(outputs: list[Tensor], reverse: bool) -> Tensor:
    """The per-step outputs, collected in processing order, stacked as (T, B, ·)."""
    return torch.stack(outputs[::-1] if reverse else outputs)


def rnn_outputs(
    w: RNNWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None, relu: bool
) -> tuple[Tensor, Tensor]:
    """y (T,B,H) and h_n (B,H) of the Elman RNN."""
    ax, valid = _projected(seq, w.w_ih, sum_bias(w.b_ih, w.b_hh))  # (T, B, H)
    act = torch.relu if relu else torch.tanh
    h, ys = h0, []
    for t in time_steps(seq.x.shape[0], seq.reverse):
        h, y_t = advance(act(ax[t] + h @ w.w_hh.t()), h, valid, t, h_probe)
        ys.append(y_t)
    return _in_time_order(ys, seq.reverse), h


def lstm_outputs(
    w: LSTMWeights, seq: Sequence, state: LSTMState, h_probe: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """y (T,B,P), h_n (B,P) and c_n (B,H) of the LSTM (with optional projection)."""
    gx, valid = _projected(seq, w.w_ih, sum_bias(w.b_ih, w.b_hh))  # (T, B, 4H)
    (h, c), ys = state, []
    for t in time_steps(seq.x.shape[0], seq.reverse):
        i, f, g, o = (gx[t] + h @ w.w_hh.t()).chunk(4, dim=1)
        c_t = f.sigmoid() * c + i.sigmoid() * g.tanh()
        m = o.sigmoid() * c_t.tanh()
        h, y_t = advance(m if w.w_hr is None else m @ w.w_hr.t(), h, valid, t, h_probe)
        ys.append(y_t)
        c, _ = advance(c_t, c, valid, t)
    return _in_time_order(ys, seq.reverse), h, c


def lnlstm_outputs(
    w: LNLSTMWeights, seq: Sequence, state: LSTMState, h_probe: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """y (T,B,H), h_n (B,H) and c_n (B,H) of the layer-normalised LSTM."""
    (h, c), ys = state, []
    H = c.shape[-1]
    x, valid = _projected(seq, w.w_ih, None)
    gx = F.layer_norm(x, (4 * H,), w.gamma_ih, sum_bias(w.b_ih, w.b_hh), EPS)  # (T, B, 4H)
    for t in time_steps(seq.x.shape[0], seq.reverse):
        a = gx[t] + F.layer_norm(h @ w.w_hh.t(), (4 * H,), w.gamma_hh, None, EPS)
        i, f, g, o = a.chunk(4, dim=1)
        c_t = f.sigmoid() * c + i.sigmoid() * g.tanh()
        m = o.sigmoid() * F.layer_norm(c_t, (H,), w.gamma_c, w.beta_c, EPS).tanh()
        h, y_t = advance(m, h, valid, t, h_probe)
        ys.append(y_t)
        c, _ = advance(c_t, c, valid, t)
    return _in_time_order(ys, seq.reverse), h, c


def lngru_outputs(
    w: LNGRUWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None
) -> tuple[Tensor, Tensor]:
    """y (T,B,H) and h_n (B,H) of the layer-normalised GRU."""
    h, ys = h0, []
    H = h0.shape[-1]
    x, valid = _projected(seq, w.w_ih, None)
    gx = F.layer_norm(x, (3 * H,), w.gamma_ih, w.b_ih, EPS)  # (T, B, 3H)
    for t in time_steps(seq.x.shape[0], seq.reverse):
        gh = F.layer_norm(h @ w.w_hh.t(), (3 * H,), w.gamma_hh, w.b_hh, EPS)
        r, z = (gx[t, :, : 2 * H] + gh[:, : 2 * H]).sigmoid().chunk(2, dim=1)
        n = torch.tanh(gx[t, :, 2 * H :] + r * gh[:, 2 * H :])
        h, y_t = advance(n + z * (h - n), h, valid, t, h_probe)
        ys.append(y_t)
    return _in_time_order(ys, seq.reverse), h


def gru_outputs(
    w: GRUWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None, reset_after: bool
) -> tuple[Tensor, Tensor]:
    """y (T,B,H) and h_n (B,H) of the GRU, reset gate after or before W_hn."""
    H = h0.shape[-1]
    gx, valid = _projected(seq, w.w_ih, w.b_ih)  # (T, B, 3H)
    w_rz, w_n = w.w_hh[: 2 * H], w.w_hh[2 * H :]
    b_rz, b_n = (w.b_hh[: 2 * H], w.b_hh[2 * H :]) if w.b_hh is not None else (None, None)
    h, ys = h0, []
    for t in time_steps(seq.x.shape[0], seq.reverse):
        if reset_after:
            gh = F.linear(h, w.w_hh, w.b_hh)  # (B, 3H)
            r, z = (gx[t, :, : 2 * H] + gh[:, : 2 * H]).sigmoid().chunk(2, dim=1)
            n = torch.tanh(gx[t, :, 2 * H :] + r * gh[:, 2 * H :])
        else:
            r, z = (gx[t, :, : 2 * H] + F.linear(h, w_rz, b_rz)).sigmoid().chunk(2, dim=1)
            n = torch.tanh(gx[t, :, 2 * H :] + F.linear(r * h, w_n, b_n))
        h, y_t = advance(n + z * (h - n), h, valid, t, h_probe)
        ys.append(y_t)
    return _in_time_order(ys, seq.reverse), h


def masked_lstm_outputs(
    w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks, h_probe: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """y, h_n and c_n of the masked LSTM: the portable forward, written out of place."""
    return PortableMaskedLSTM().forward(w, seq, state, masks, h_probe)[:3]


def masked_gru_outputs(
    w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, h_probe: Tensor | None,
    reset_after: bool,
) -> tuple[Tensor, Tensor]:
    """y and h_n of the masked GRU: the portable forward, written out of place."""
    return PortableMaskedGRU().forward(w, seq, h0, masks, h_probe, reset_after)[:2]

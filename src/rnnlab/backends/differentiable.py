"""The recurrences written with out-of-place torch operations only.

The same equations as the portable forward functions (see their modules), but every
step builds new tensors instead of writing into preallocated buffers, so autograd can
differentiate the result to any order. :mod:`rnnlab.ops` runs them only when a backward
pass is itself being recorded (``create_graph=True``: double backward, gradient
penalties, Hessian-vector products); the first-order backward never uses them.

Each function takes its op's arguments in the op's order and returns the op's
differentiable outputs: y and the final state(s).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.backends._host import sum_bias, time_steps, valid_mask, zero_padding
from rnnlab.backends._layer_norm import EPS


def _advance(new: Tensor, old: Tensor, valid: Tensor | None, t: int) -> tuple[Tensor, Tensor]:
    """(state after step t, output of step t): padding steps keep the state, output 0."""
    if valid is None:
        return new, new
    m = valid[t]
    return torch.where(m, new, old), torch.where(m, new, 0.0)


def _in_time_order(outputs: list[Tensor], reverse: bool) -> Tensor:
    """The per-step outputs, collected in processing order, stacked as (T, B, ·)."""
    return torch.stack(outputs[::-1] if reverse else outputs)


def rnn_outputs(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
    relu: bool,
) -> tuple[Tensor, Tensor]:
    """y (T,B,H) and h_n (B,H) of the Elman RNN."""
    T = x.shape[0]
    valid = valid_mask(lengths, T)
    ax = F.linear(zero_padding(x, valid), w_ih, sum_bias(b_ih, b_hh))  # (T, B, H)
    act = torch.relu if relu else torch.tanh
    h, ys = h0, []
    for t in time_steps(T, reverse):
        h_t = act(ax[t] + h @ w_hh.t())
        if h_probe is not None:
            h_t = h_t + h_probe[t]
        h, y_t = _advance(h_t, h, valid, t)
        ys.append(y_t)
    return _in_time_order(ys, reverse), h


def lstm_outputs(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """y (T,B,P), h_n (B,P) and c_n (B,H) of the LSTM (with optional projection)."""
    T = x.shape[0]
    valid = valid_mask(lengths, T)
    gx = F.linear(zero_padding(x, valid), w_ih, sum_bias(b_ih, b_hh))  # (T, B, 4H)
    h, c, ys = h0, c0, []
    for t in time_steps(T, reverse):
        i, f, g, o = (gx[t] + h @ w_hh.t()).chunk(4, dim=1)
        c_t = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h_t = o.sigmoid() * c_t.tanh()
        if w_hr is not None:
            h_t = h_t @ w_hr.t()
        if h_probe is not None:
            h_t = h_t + h_probe[t]
        h, y_t = _advance(h_t, h, valid, t)
        ys.append(y_t)
        c, _ = _advance(c_t, c, valid, t)
    return _in_time_order(ys, reverse), h, c


def lnlstm_outputs(
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
) -> tuple[Tensor, Tensor, Tensor]:
    """y (T,B,H), h_n (B,H) and c_n (B,H) of the layer-normalised LSTM."""
    T, H = x.shape[0], c0.shape[-1]
    valid = valid_mask(lengths, T)
    gx = F.layer_norm(  # (T, B, 4H)
        F.linear(zero_padding(x, valid), w_ih), (4 * H,), gamma_ih, sum_bias(b_ih, b_hh), EPS
    )
    h, c, ys = h0, c0, []
    for t in time_steps(T, reverse):
        a = gx[t] + F.layer_norm(h @ w_hh.t(), (4 * H,), gamma_hh, None, EPS)
        i, f, g, o = a.chunk(4, dim=1)
        c_t = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h_t = o.sigmoid() * F.layer_norm(c_t, (H,), gamma_c, beta_c, EPS).tanh()
        if h_probe is not None:
            h_t = h_t + h_probe[t]
        h, y_t = _advance(h_t, h, valid, t)
        ys.append(y_t)
        c, _ = _advance(c_t, c, valid, t)
    return _in_time_order(ys, reverse), h, c


def lngru_outputs(
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
) -> tuple[Tensor, Tensor]:
    """y (T,B,H) and h_n (B,H) of the layer-normalised GRU."""
    T, H = x.shape[0], h0.shape[-1]
    valid = valid_mask(lengths, T)
    gx = F.layer_norm(F.linear(zero_padding(x, valid), w_ih), (3 * H,), gamma_ih, b_ih, EPS)
    h, ys = h0, []
    for t in time_steps(T, reverse):
        gh = F.layer_norm(h @ w_hh.t(), (3 * H,), gamma_hh, b_hh, EPS)
        r, z = (gx[t, :, : 2 * H] + gh[:, : 2 * H]).sigmoid().chunk(2, dim=1)
        n = torch.tanh(gx[t, :, 2 * H :] + r * gh[:, 2 * H :])
        h_t = n + z * (h - n)
        if h_probe is not None:
            h_t = h_t + h_probe[t]
        h, y_t = _advance(h_t, h, valid, t)
        ys.append(y_t)
    return _in_time_order(ys, reverse), h


def gru_outputs(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
    reset_after: bool,
) -> tuple[Tensor, Tensor]:
    """y (T,B,H) and h_n (B,H) of the GRU, reset gate after or before W_hn."""
    T = x.shape[0]
    H = h0.shape[-1]
    valid = valid_mask(lengths, T)
    gx = F.linear(zero_padding(x, valid), w_ih, b_ih)  # (T, B, 3H)
    w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
    b_rz, b_n = (b_hh[: 2 * H], b_hh[2 * H :]) if b_hh is not None else (None, None)
    h, ys = h0, []
    for t in time_steps(T, reverse):
        if reset_after:
            gh = F.linear(h, w_hh, b_hh)  # (B, 3H)
            r, z = (gx[t, :, : 2 * H] + gh[:, : 2 * H]).sigmoid().chunk(2, dim=1)
            n = torch.tanh(gx[t, :, 2 * H :] + r * gh[:, 2 * H :])
        else:
            r, z = (gx[t, :, : 2 * H] + F.linear(h, w_rz, b_rz)).sigmoid().chunk(2, dim=1)
            n = torch.tanh(gx[t, :, 2 * H :] + F.linear(r * h, w_n, b_n))
        h_t = n + z * (h - n)
        if h_probe is not None:
            h_t = h_t + h_probe[t]
        h, y_t = _advance(h_t, h, valid, t)
        ys.append(y_t)
    return _in_time_order(ys, reverse), h

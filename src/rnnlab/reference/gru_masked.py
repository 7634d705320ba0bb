"""GRU with recurrent dropout and zoneout in float64 NumPy: forward and backpropagation
through time, the masks given.

Shape legend:  T time steps · B batch · I input size · H hidden size
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    as_float64,
    grad_or_zeros,
    hidden_size,
    optional_float64,
    sigmoid,
    step_mask,
    time_steps,
)


@dataclass(frozen=True, eq=False)
class GRUMaskedCache:
    """What gru_masked_backward needs from gru_masked_forward.

    x       (T, B, I)  the inputs, 0 at padding steps
    h_prev  (T, B, H)  h_{t-1}, the state entering step t
    valid   (T, B, 1)  True where t < lengths[b]
    drop_h  (B, H)     the recurrent dropout multiplier d (ones without)
    keep_h  (T, B, H)  the zoneout share k_t (zeros without)
    gates   {"r", "z", "n"}: the gates after σ / tanh, each (T, B, H), 0 at padding steps
    """

    x: np.ndarray
    h_prev: np.ndarray
    valid: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    drop_h: np.ndarray
    keep_h: np.ndarray
    reset_after: bool
    reverse: bool
    gates: dict[str, np.ndarray]


def gru_masked_forward(
    x,
    h0,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    *,
    drop_h=None,
    keep_h=None,
    reset_after: bool = True,
    lengths=None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, GRUMaskedCache]:
    """Run one direction of a single-layer GRU with recurrent dropout and zoneout.

    At every valid step t of sample b, with the gate blocks in the order r, z, n, the
    recurrent dropout multiplier d (B, H), u_{t-1} = d ⊙ h_{t-1}, and the zoneout share
    k_t (B, H):

        r_t = σ(W_ir x_t + b_ir + W_hr u_{t-1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz u_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn u_{t-1} + b_hn))      reset_after=True
        n_t = tanh(W_in x_t + b_in + W_hn (r_t ⊙ u_{t-1}) + b_hn)      reset_after=False
        h̃_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
        h_t = k_t ⊙ h_{t-1} + (1 - k_t) ⊙ h̃_t                           zoneout
        y_t = h_t

    d and k as in :func:`rnnlab.reference.lstm_masked_forward` (recurrent dropout: one
    mask per sequence scaled by 1/(1 - p), d = 1 in eval; zoneout: k_t ~ Bernoulli(p)
    per step in training, k_t = p in eval). Recurrent dropout acts inside the recurrent
    products only; the carried term z_t ⊙ h_{t-1} reads the state itself. With d = 1
    and k = 0 this is :func:`rnnlab.reference.gru_forward`; padding, lengths and reverse
    are as there.

    Shapes: as gru_forward; drop_h (B, H) or None (d = 1); keep_h (T, B, H) or None (k = 0).

    Returns (y (T, B, H), h_n (B, H), cache).
    """
    H = hidden_size(w_hh, 3, "(3H, H)")
    x = as_float64("x", x, "(T, B, I)", (None, None, None))
    T, B, I = x.shape
    h0 = as_float64("h0", h0, "(B, H)", (B, H))
    w_ih = as_float64("w_ih", w_ih, "(3H, I)", (3 * H, I))
    w_hh = as_float64("w_hh", w_hh, "(3H, H)", (3 * H, H))
    b_ih = optional_float64("b_ih", b_ih, "(3H,)", (3 * H,))
    b_hh = optional_float64("b_hh", b_hh, "(3H,)", (3 * H,))
    d = np.ones((B, H)) if drop_h is None else as_float64("drop_h", drop_h, "(B, H)", (B, H))
    k = np.zeros((T, B, H)) if keep_h is None else as_float64(
        "keep_h", keep_h, "(T, B, H)", (T, B, H))
    valid = step_mask(lengths, T, B)
    x = np.where(valid, x, 0.0)
    w_ir, w_iz, w_in = np.split(w_ih, 3)
    w_hr, w_hz, w_hn = np.split(w_hh, 3)
    b_ir, b_iz, b_in = (0.0, 0.0, 0.0) if b_ih is None else np.split(b_ih, 3)
    b_hr, b_hz, b_hn = (0.0, 0.0, 0.0) if b_hh is None else np.split(b_hh, 3)

    y = np.zeros((T, B, H))
    h_prev = np.zeros((T, B, H))
    gates = {name: np.zeros((T, B, H)) for name in ("r", "z", "n")}
    h = h0
    for t in time_steps(T, reverse):
        keep = valid[t]
        h_prev[t] = h
        x_t, u = x[t], d * h                              # u: h_{t-1} as the products see it
        r = sigmoid(x_t @ w_ir.T + b_ir + u @ w_hr.T + b_hr)
        z = sigmoid(x_t @ w_iz.T + b_iz + u @ w_hz.T + b_hz)
        if reset_after:
            n = np.tanh(x_t @ w_in.T + b_in + r * (u @ w_hn.T + b_hn))
        else:
            n = np.tanh(x_t @ w_in.T + b_in + (r * u) @ w_hn.T + b_hn)
        h_tilde = (1.0 - z) * n + z * h
        h_t = k[t] * h + (1.0 - k[t]) * h_tilde           # zoneout
        h = np.where(keep, h_t, h)
        y[t] = np.where(keep, h, 0.0)
        for name, value in (("r", r), ("z", z), ("n", n)):
            gates[name][t] = np.where(keep, value, 0.0)

    cache = GRUMaskedCache(x, h_prev, valid, w_ih, w_hh, b_ih, b_hh, d, k, reset_after,
                           reverse, gates)
    return y, h, cache


def gru_masked_backward(dy, dh_n, cache: GRUMaskedCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for gru_masked_forward (the masks are constants).

    The loss is L = Σ dy ⊙ y + Σ dh_n ⊙ h_n. Walking the steps in the opposite order to
    the forward pass, with dh_t the total ∂L/∂h_t and u_{t-1} = d ⊙ h_{t-1}:

        dh_t  = dy_t + (what h_t gave step t+1)       (dh_n at the last step)
        dh̃_t = (1 - k_t) ⊙ dh_t
        dn_t  = dh̃_t ⊙ (1 - z_t)     dz_t = dh̃_t ⊙ (h_{t-1} - n_t)     dan_t = dn_t ⊙ (1 - n_t²)
      reset_after=True:   dhn_t = dan_t ⊙ r_t   dr_t = dan_t ⊙ (W_hn u_{t-1} + b_hn)
                          du_t gets W_hnᵀ dhn_t        dW_hn = Σ_t dhn_t u_{t-1}ᵀ
      reset_after=False:  dhn_t = dan_t   dr_t = (W_hnᵀ dan_t) ⊙ u_{t-1}
                          du_t gets r_t ⊙ W_hnᵀ dhn_t  dW_hn = Σ_t dhn_t (r_t ⊙ u_{t-1})ᵀ
        dar_t = dr_t ⊙ r_t(1 - r_t)    daz_t = dz_t ⊙ z_t(1 - z_t)
        du_t gets W_hrᵀ dar_t + W_hzᵀ daz_t;   dW_hr = Σ_t dar_t u_{t-1}ᵀ, dW_hz likewise
        dx_t, dW_i·, db_i·, db_h· as in :func:`rnnlab.reference.gru_backward`
        dh_{t-1} gets k_t ⊙ dh_t + z_t ⊙ dh̃_t + d ⊙ du_t

    A padding step hands the state gradient through unchanged and takes none itself.
    Returns "x", "h0", "w_ih", "w_hh", "b_ih", "b_hh" (None when absent) and "h": (T, B, H)
    the total ∂L/∂h_t, 0 at padding steps.
    """
    if not isinstance(cache, GRUMaskedCache):
        raise TypeError(
            f"cache must be the GRUMaskedCache from gru_masked_forward; got {type(cache).__name__}"
        )
    x, d, k = cache.x, cache.drop_h, cache.keep_h
    T, B, _ = x.shape
    H = cache.w_hh.shape[1]
    dy = grad_or_zeros("dy", dy, "(T, B, H)", (T, B, H))
    dh_next = grad_or_zeros("dh_n", dh_n, "(B, H)", (B, H))
    w_ir, w_iz, w_in = np.split(cache.w_ih, 3)
    w_hr, w_hz, w_hn = np.split(cache.w_hh, 3)
    b_hn = 0.0 if cache.b_hh is None else cache.b_hh[2 * H:]

    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(cache.w_ih), np.zeros_like(cache.w_hh)
    db_ih, db_hh = np.zeros(3 * H), np.zeros(3 * H)
    dw_ir, dw_iz, dw_in = np.split(dw_ih, 3)
    dw_hr, dw_hz, dw_hn = np.split(dw_hh, 3)
    db_ir, db_iz, db_in = np.split(db_ih, 3)
    db_hr, db_hz, db_hn = np.split(db_hh, 3)
    dh_record = np.zeros((T, B, H))
    for t in reversed(time_steps(T, cache.reverse)):
        keep = cache.valid[t]
        r, z, n = (cache.gates[name][t] for name in ("r", "z", "n"))
        h_prev, x_t = cache.h_prev[t], x[t]
        u = d * h_prev
        dh = np.where(keep, dy[t] + dh_next, 0.0)
        dh_tilde = (1.0 - k[t]) * dh                  # h_t = k h_{t-1} + (1 - k) h̃_t
        dn = dh_tilde * (1.0 - z)                     # h̃_t = (1 - z) n + z h_{t-1}
        dz = dh_tilde * (h_prev - n)
        dan = dn * (1.0 - n**2)
        if cache.reset_after:                         # an = … + r ⊙ (W_hn u + b_hn)
            dhn = dan * r
            dr = dan * (u @ w_hn.T + b_hn)
            dw_hn += dhn.T @ u
            du_via_n = dhn @ w_hn
        else:                                         # an = … + W_hn (r ⊙ u) + b_hn
            dhn = dan
            dru = dhn @ w_hn
            dr = dru * u
            dw_hn += dhn.T @ (r * u)
            du_via_n = dru * r
        dar = dr * r * (1.0 - r)
        daz = dz * z * (1.0 - z)
        dx[t] = dar @ w_ir + daz @ w_iz + dan @ w_in
        dw_ir += dar.T @ x_t
        dw_iz += daz.T @ x_t
        dw_in += dan.T @ x_t
        dw_hr += dar.T @ u
        dw_hz += daz.T @ u
        db_ir += dar.sum(axis=0)
        db_iz += daz.sum(axis=0)
        db_in += dan.sum(axis=0)
        db_hr += dar.sum(axis=0)
        db_hz += daz.sum(axis=0)
        db_hn += dhn.sum(axis=0)
        du = dar @ w_hr + daz @ w_hz + du_via_n
        dh_next = k[t] * dh + z * dh_tilde + d * du + np.where(keep, 0.0, dh_next)
        dh_record[t] = dh

    return {
        "x": dx,
        "h0": dh_next,
        "w_ih": dw_ih,
        "w_hh": dw_hh,
        "b_ih": None if cache.b_ih is None else db_ih,
        "b_hh": None if cache.b_hh is None else db_hh,
        "h": dh_record,
    }

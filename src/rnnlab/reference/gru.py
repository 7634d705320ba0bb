"""GRU in float64 NumPy: forward over a sequence and backpropagation through time."""

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
class GRUCache:
    """What gru_backward needs from gru_forward.

    x       (T, B, I)  the inputs, 0 at padding steps (padding never reaches the math)
    h_prev  (T, B, H)  h_{t-1}, the state entering step t
    valid   (T, B, 1)  True where t < lengths[b]
    gates   {"r", "z", "n"}: the gates after σ / tanh, each (T, B, H), 0 at padding steps
    """

    x: np.ndarray
    h_prev: np.ndarray
    valid: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    reset_after: bool
    reverse: bool
    gates: dict[str, np.ndarray]


def gru_forward(
    x,
    h0,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    *,
    reset_after: bool = True,
    lengths=None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, GRUCache]:
    """Run one direction of a single-layer GRU over a sequence.

    At every valid step t of sample b, with the gate blocks of W and b in the order r, z, n:

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)                 reset gate
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)                 update gate
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))      reset_after=True
        n_t = tanh(W_in x_t + b_in + W_hn (r_t ⊙ h_{t-1}) + b_hn)      reset_after=False
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
        y_t = h_t

    reset_after=True is torch.nn.GRU and cuDNN; reset_after=False is Cho et al. (2014).
    Lengths, padding steps and reverse: as every forward (:mod:`rnnlab.reference`).

    Shapes:
        x        (T, B, I)      w_ih  (3H, I)     b_ih  (3H,) or None (no bias)
        h0       (B, H)         w_hh  (3H, H)     b_hh  (3H,) or None
        lengths  (B,) or None

    Returns (y, h_n, cache):
        y        (T, B, H)  outputs, 0 at padding steps
        h_n      (B, H)     the state after each sample's last step
        cache    GRUCache   for gru_backward; cache.gates holds "r", "z", "n"
    """
    H = hidden_size(w_hh, 3, "(3H, H)")
    x = as_float64("x", x, "(T, B, I)", (None, None, None))
    T, B, I = x.shape
    h0 = as_float64("h0", h0, "(B, H)", (B, H))
    w_ih = as_float64("w_ih", w_ih, "(3H, I)", (3 * H, I))
    w_hh = as_float64("w_hh", w_hh, "(3H, H)", (3 * H, H))
    b_ih = optional_float64("b_ih", b_ih, "(3H,)", (3 * H,))
    b_hh = optional_float64("b_hh", b_hh, "(3H,)", (3 * H,))
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
        keep = valid[t]                                   # (B, 1)
        h_prev[t] = h
        x_t = x[t]                                        # (B, I)
        r = sigmoid(x_t @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
        z = sigmoid(x_t @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
        if reset_after:
            n = np.tanh(x_t @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
        else:
            n = np.tanh(x_t @ w_in.T + b_in + (r * h) @ w_hn.T + b_hn)
        h_t = (1.0 - z) * n + z * h                       # (B, H)
        h = np.where(keep, h_t, h)                        # padding steps keep the state
        y[t] = np.where(keep, h, 0.0)
        for name, value in (("r", r), ("z", z), ("n", n)):
            gates[name][t] = np.where(keep, value, 0.0)

    cache = GRUCache(x, h_prev, valid, w_ih, w_hh, b_ih, b_hh, reset_after, reverse, gates)
    return y, h, cache


def gru_backward(dy, dh_n, cache: GRUCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for gru_forward.

    Walking the steps backward (:mod:`rnnlab.reference`, every backward):

        dh_t  = dy_t + (what h_t gave step t+1)       (dh_n at the last step)
        dn_t  = dh_t ⊙ (1 - z_t)      dz_t = dh_t ⊙ (h_{t-1} - n_t)
        dan_t = dn_t ⊙ (1 - n_t²)                      through tanh
      reset_after=True, with hn_t = W_hn h_{t-1} + b_hn:
        dhn_t = dan_t ⊙ r_t           dr_t = dan_t ⊙ hn_t
      reset_after=False, with hn_t = W_hn (r_t ⊙ h_{t-1}) + b_hn:
        dhn_t = dan_t                 dr_t = (W_hnᵀ dan_t) ⊙ h_{t-1}
        dar_t = dr_t ⊙ r_t(1 - r_t)    daz_t = dz_t ⊙ z_t(1 - z_t)    through σ
        dx_t  = W_irᵀ dar_t + W_izᵀ daz_t + W_inᵀ dan_t
        dW_i· = Σ_t da·_t x_tᵀ      db_i· = Σ_t da·_t                (· = r, z, n)
        dW_hr = Σ_t dar_t h_{t-1}ᵀ   dW_hz = Σ_t daz_t h_{t-1}ᵀ
        dW_hn = Σ_t dhn_t h_{t-1}ᵀ  (reset_after)  or  Σ_t dhn_t (r_t ⊙ h_{t-1})ᵀ
        db_hr = Σ_t dar_t    db_hz = Σ_t daz_t    db_hn = Σ_t dhn_t
        dh_{t-1} gets z_t ⊙ dh_t + W_hrᵀ dar_t + W_hzᵀ daz_t + the n path:
            W_hnᵀ dhn_t (reset_after)  or  r_t ⊙ W_hnᵀ dhn_t

    Shapes: dy (T, B, H) or None, dh_n (B, H) or None.
    Returns the gradients "x", "h0", "w_ih", "w_hh", "b_ih", "b_hh" and "h".
    """
    if not isinstance(cache, GRUCache):
        raise TypeError(f"cache must be the GRUCache from gru_forward; got {type(cache).__name__}")
    x = cache.x
    T, B, _ = x.shape
    H = cache.w_hh.shape[1]
    dy = grad_or_zeros("dy", dy, "(T, B, H)", (T, B, H))
    dh_next = grad_or_zeros("dh_n", dh_n, "(B, H)", (B, H))  # ∂L/∂(state after step t) from later
    w_ir, w_iz, w_in = np.split(cache.w_ih, 3)
    w_hr, w_hz, w_hn = np.split(cache.w_hh, 3)
    b_hn = 0.0 if cache.b_hh is None else cache.b_hh[2 * H:]

    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(cache.w_ih), np.zeros_like(cache.w_hh)
    db_ih, db_hh = np.zeros(3 * H), np.zeros(3 * H)
    # per-gate views: adding into dw_ir, … fills dw_ih, …
    dw_ir, dw_iz, dw_in = np.split(dw_ih, 3)
    dw_hr, dw_hz, dw_hn = np.split(dw_hh, 3)
    db_ir, db_iz, db_in = np.split(db_ih, 3)
    db_hr, db_hz, db_hn = np.split(db_hh, 3)
    dh_record = np.zeros((T, B, H))
    for t in reversed(time_steps(T, cache.reverse)):
        keep = cache.valid[t]
        r, z, n = (cache.gates[name][t] for name in ("r", "z", "n"))
        h_prev, x_t = cache.h_prev[t], x[t]
        dh = np.where(keep, dy[t] + dh_next, 0.0)     # h_t feeds y_t and the next step
        dn = dh * (1.0 - z)                           # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
        dz = dh * (h_prev - n)
        dan = dn * (1.0 - n**2)                       # n_t = tanh(an_t)
        if cache.reset_after:                         # an_t = … + r_t ⊙ (W_hn h_{t-1} + b_hn)
            dhn = dan * r
            dr = dan * (h_prev @ w_hn.T + b_hn)
            dw_hn += dhn.T @ h_prev
            dh_prev_via_n = dhn @ w_hn
        else:                                         # an_t = … + W_hn (r_t ⊙ h_{t-1}) + b_hn
            dhn = dan
            drh = dhn @ w_hn                          # ∂L/∂(r_t ⊙ h_{t-1})
            dr = drh * h_prev
            dw_hn += dhn.T @ (r * h_prev)
            dh_prev_via_n = drh * r
        dar = dr * r * (1.0 - r)                      # r_t = σ(ar_t)
        daz = dz * z * (1.0 - z)                      # z_t = σ(az_t)
        dx[t] = dar @ w_ir + daz @ w_iz + dan @ w_in  # W_i· x_t in every gate
        dw_ir += dar.T @ x_t
        dw_iz += daz.T @ x_t
        dw_in += dan.T @ x_t
        dw_hr += dar.T @ h_prev                       # W_h· h_{t-1} in r and z
        dw_hz += daz.T @ h_prev
        db_ir += dar.sum(axis=0)
        db_iz += daz.sum(axis=0)
        db_in += dan.sum(axis=0)
        db_hr += dar.sum(axis=0)
        db_hz += daz.sum(axis=0)
        db_hn += dhn.sum(axis=0)
        dh_next = (
            dh * z + dar @ w_hr + daz @ w_hz + dh_prev_via_n  # every path from h_{t-1}
            + np.where(keep, 0.0, dh_next)                  # padding passes it through
        )
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

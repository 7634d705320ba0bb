"""GRU in float64 NumPy: forward over a sequence and backpropagation through time. The
cell's pieces (`gru_blocks`, `gru_cell`, `gru_cell_backward`) also serve the masked GRU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._common import (
    SequenceCache,
    bias_grads,
    cell_arguments,
    check_cache,
    loss_grads,
    sigmoid,
    step_record,
    walk,
    walk_back,
)


@dataclass(frozen=True, eq=False)
class GRUCache(SequenceCache):
    """What gru_backward needs from gru_forward.

    The fields of every cache (x, h_prev (T, B, H), valid, reverse, gates), and
    w_ih, w_hh, b_ih, b_hh   the weights as checked (None: absent)
    reset_after              the candidate's form
    gates   {"r", "z", "n"}: the gates after σ / tanh, each (T, B, H), 0 at padding steps
    """

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    reset_after: bool


class GRUBlocks(NamedTuple):
    """The gate blocks (r, z, n) of W_ih, W_hh, b_ih, b_hh: views, 0.0 for an absent bias."""

    w_ir: np.ndarray
    w_iz: np.ndarray
    w_in: np.ndarray
    w_hr: np.ndarray
    w_hz: np.ndarray
    w_hn: np.ndarray
    b_ir: np.ndarray | float
    b_iz: np.ndarray | float
    b_in: np.ndarray | float
    b_hr: np.ndarray | float
    b_hz: np.ndarray | float
    b_hn: np.ndarray | float


def gru_blocks(w_ih, w_hh, b_ih, b_hh) -> GRUBlocks:
    """Split the GRU's weights (or their gradient sums: adding into a block fills the whole)."""
    no_bias = (0.0, 0.0, 0.0)
    return GRUBlocks(
        *np.split(w_ih, 3), *np.split(w_hh, 3),
        *(no_bias if b_ih is None else np.split(b_ih, 3)),
        *(no_bias if b_hh is None else np.split(b_hh, 3)),
    )


def gru_cell(x_t, u, w: GRUBlocks, reset_after: bool) -> tuple[np.ndarray, ...]:
    """The gates of one step: gru_forward's r_t, z_t, n_t with the recurrent products reading
    u (h_{t-1}; the masked GRU's d ⊙ h_{t-1}). Returns (r, z, n)."""
    r = sigmoid(x_t @ w.w_ir.T + w.b_ir + u @ w.w_hr.T + w.b_hr)
    z = sigmoid(x_t @ w.w_iz.T + w.b_iz + u @ w.w_hz.T + w.b_hz)
    if reset_after:
        n = np.tanh(x_t @ w.w_in.T + w.b_in + r * (u @ w.w_hn.T + w.b_hn))
    else:
        n = np.tanh(x_t @ w.w_in.T + w.b_in + (r * u) @ w.w_hn.T + w.b_hn)
    return r, z, n


def gru_cell_backward(t: int, dh_tilde, u, cache, w: GRUBlocks, sums: GRUBlocks):
    """Step t of gru_backward from dn_t to dx_t, given dh̃_t, the gradient of
    h̃_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1} (h_t itself in the plain GRU), and u, what the
    recurrent products read (h_{t-1}; the masked GRU's d ⊙ h_{t-1}). Adds into `sums`,
    the blocks of the weight and bias gradients; returns (dx_t, du): what u gets through
    the products.
    """
    r, z, n = (cache.gates[name][t] for name in ("r", "z", "n"))
    h_prev, x_t = cache.h_prev[t], cache.x[t]
    dw_ir, dw_iz, dw_in, dw_hr, dw_hz, dw_hn, db_ir, db_iz, db_in, db_hr, db_hz, db_hn = sums
    dn = dh_tilde * (1.0 - z)                         # h̃_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
    dz = dh_tilde * (h_prev - n)
    dan = dn * (1.0 - n**2)                           # n_t = tanh(an_t)
    if cache.reset_after:                             # an_t = … + r_t ⊙ (W_hn u + b_hn)
        dhn = dan * r
        dr = dan * (u @ w.w_hn.T + w.b_hn)
        dw_hn += dhn.T @ u
        du_via_n = dhn @ w.w_hn
    else:                                             # an_t = … + W_hn (r_t ⊙ u) + b_hn
        dhn = dan
        dru = dhn @ w.w_hn                            # ∂L/∂(r_t ⊙ u)
        dr = dru * u
        dw_hn += dhn.T @ (r * u)
        du_via_n = dru * r
    dar = dr * r * (1.0 - r)                          # r_t = σ(ar_t)
    daz = dz * z * (1.0 - z)                          # z_t = σ(az_t)
    dw_ir += dar.T @ x_t                              # W_i· x_t in every gate
    dw_iz += daz.T @ x_t
    dw_in += dan.T @ x_t
    dw_hr += dar.T @ u                                # W_h· u in r and z
    dw_hz += daz.T @ u
    db_ir += dar.sum(axis=0)
    db_iz += daz.sum(axis=0)
    db_in += dan.sum(axis=0)
    db_hr += dar.sum(axis=0)
    db_hz += daz.sum(axis=0)
    db_hn += dhn.sum(axis=0)
    dx_t = dar @ w.w_ir + daz @ w.w_iz + dan @ w.w_in
    return dx_t, dar @ w.w_hr + daz @ w.w_hz + du_via_n


def gru_grads(cache) -> dict[str, np.ndarray]:
    """Zero sums of the GRU's weight and bias gradients ("w_ih", "w_hh", "b_ih", "b_hh")."""
    H = cache.w_hh.shape[1]
    return {"w_ih": np.zeros_like(cache.w_ih), "w_hh": np.zeros_like(cache.w_hh),
            "b_ih": np.zeros(3 * H), "b_hh": np.zeros(3 * H)}


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
    x, valid, h0, w_ih, w_hh, b_ih, b_hh = cell_arguments(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, 3)
    T, B, _ = x.shape

    w = gru_blocks(w_ih, w_hh, b_ih, b_hh)

    def step(t, h):
        r, z, n = gru_cell(x[t], h, w, reset_after)
        return ((1.0 - z) * n + z * h,), {"r": r, "z": z, "n": n}

    gates = step_record(T, B, dict.fromkeys("rzn", h0.shape[1]))
    y, (h,), (h_prev,) = walk(step, (h0,), valid, reverse, gates)
    cache = GRUCache(x=x, h_prev=h_prev, valid=valid, reverse=reverse, gates=gates, w_ih=w_ih,
                     w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, reset_after=reset_after)
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
    check_cache(cache, GRUCache, "gru_forward")
    x = cache.x
    dy, d_final = loss_grads(cache, dy, dh_n)
    dx, grads = np.zeros_like(x), gru_grads(cache)
    w, sums = gru_blocks(cache.w_ih, cache.w_hh, cache.b_ih, cache.b_hh), gru_blocks(**grads)

    def step(t, dh):
        dx[t], dh_prev_via_gates = gru_cell_backward(t, dh, cache.h_prev[t], cache, w, sums)
        return (dh * cache.gates["z"][t] + dh_prev_via_gates,)   # every path from h_{t-1}

    dh, (dh0,) = walk_back(step, dy, d_final, cache.valid, cache.reverse)
    return {"x": dx, "h0": dh0, "w_ih": grads["w_ih"], "w_hh": grads["w_hh"],
            **bias_grads(cache, grads["b_ih"], grads["b_hh"]), "h": dh}

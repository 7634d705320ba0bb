"""Layer-normalised GRU in float64 NumPy: forward and backpropagation through time; the
GRU (:mod:`rnnlab.reference.gru`) with its two projections normalised as in
:mod:`rnnlab.reference.lnlstm`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    bias_grads,
    cell_arguments,
    check_cache,
    float64_or,
    loss_grads,
    sigmoid,
    step_record,
    walk,
    walk_back,
)
from .gru import GRUCache
from .lnlstm import _normalise, _normalise_backward


@dataclass(frozen=True, eq=False)
class LNGRUCache(GRUCache):
    """What lngru_backward needs from lngru_forward.

    The fields of :class:`~rnnlab.reference.GRUCache` (reset_after True), and
    gamma_ih, gamma_hh   the normalisations' gains
    norm    {"ih", "hh": the normalised projections v̂ (T, B, 3H)}
    rstd    {"ih", "hh": 1 / √(σ² + ε) of each normalisation, (T, B, 1)}
    gates   {"r", "z", "n": the gates after σ / tanh, "hn": the candidate's recurrent
            term}, each (T, B, H) and 0 at padding steps
    """

    gamma_ih: np.ndarray
    gamma_hh: np.ndarray
    norm: dict[str, np.ndarray]
    rstd: dict[str, np.ndarray]


def lngru_forward(
    x,
    h0,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    gamma_ih=None,
    gamma_hh=None,
    *,
    lengths=None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, LNGRUCache]:
    """Run one direction of a single-layer layer-normalised GRU over a sequence.

    LN(v; γ) = γ ⊙ (v - μ) / √(σ² + ε) with μ, σ² the mean and (biased) variance of v's
    entries and ε = 1e-5, as in :func:`~rnnlab.reference.lnlstm_forward`. At every valid
    step t of sample b, the gate blocks of W, b and γ in the order r, z, n (as Haste's
    LayerNormGRU, with its z, r, h blocks reordered):

        u_t = LN(W_ih x_t; γ_ih) + b_ih          v_t = LN(W_hh h_{t-1}; γ_hh) + b_hh   (B, 3H)
        r_t = σ(u_r + v_r)    z_t = σ(u_z + v_z)
        n_t = tanh(u_n + r_t ⊙ v_n)              (hn_t = v_n, the candidate's recurrent term)
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
        y_t = h_t

    Each projection is normalised over all 3H entries at once (Haste); b_ih and b_hh are
    the β of the two normalisations. It is torch.nn's GRU (reset after the recurrent
    product) with both projections normalised.
    Lengths, padding steps and reverse: as every forward (:mod:`rnnlab.reference`).

    Shapes:
        x   (T, B, I)    w_ih  (3H, I)    b_ih  (3H,) or None    gamma_ih (3H,)
        h0  (B, H)       w_hh  (3H, H)    b_hh  (3H,) or None    gamma_hh (3H,)
        lengths  (B,) integers in [1, T], or None: every sample runs all T steps
    The gains default to ones (None).

    Returns (y, h_n, cache):
        y     (T, B, H)  outputs, 0 at padding steps
        h_n   (B, H)     the state after each sample's last step
        cache LNGRUCache for lngru_backward; cache.gates holds "r", "z", "n", "hn"
    """
    x, valid, h0, w_ih, w_hh, b_ih, b_hh = cell_arguments(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, 3)
    T, B, _ = x.shape
    H = h0.shape[1]
    gamma_ih = float64_or("gamma_ih", gamma_ih, 1.0, "(3H,)", (3 * H,))
    gamma_hh = float64_or("gamma_hh", gamma_hh, 1.0, "(3H,)", (3 * H,))
    shift_ih = 0.0 if b_ih is None else b_ih
    shift_hh = 0.0 if b_hh is None else b_hh

    def step(t, h):
        v_ih, r_ih = _normalise(x[t] @ w_ih.T)            # (B, 3H)
        v_hh, r_hh = _normalise(h @ w_hh.T)
        u = gamma_ih * v_ih + shift_ih
        v = gamma_hh * v_hh + shift_hh
        r = sigmoid(u[:, :H] + v[:, :H])
        z = sigmoid(u[:, H:2 * H] + v[:, H:2 * H])
        hn = v[:, 2 * H:]
        n = np.tanh(u[:, 2 * H:] + r * hn)
        return (((1.0 - z) * n + z * h,), {"r": r, "z": z, "n": n, "hn": hn},
                {"ih": v_ih, "hh": v_hh}, {"ih": r_ih, "hh": r_hh})

    gates = step_record(T, B, dict.fromkeys(("r", "z", "n", "hn"), H))
    norm = step_record(T, B, {"ih": 3 * H, "hh": 3 * H})
    rstd = step_record(T, B, dict.fromkeys(norm, 1))
    y, (h,), (h_prev,) = walk(step, (h0,), valid, reverse, gates, norm, rstd)
    cache = LNGRUCache(
        x=x, h_prev=h_prev, valid=valid, reverse=reverse, gates=gates, w_ih=w_ih, w_hh=w_hh,
        b_ih=b_ih, b_hh=b_hh, reset_after=True, gamma_ih=gamma_ih, gamma_hh=gamma_hh,
        norm=norm, rstd=rstd,
    )
    return y, h, cache


def lngru_backward(dy, dh_n, cache: LNGRUCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for lngru_forward.

    Walking the steps backward (:mod:`rnnlab.reference`, every backward), with
    LN⁻¹'(d; v̂, rstd) the gradient through a normalisation (as in lnlstm_backward):

        dh_t  = dy_t + z_{t+1} ⊙ dh_{t+1} + W_hhᵀ dp^hh_{t+1}      (dh_n at the last step)
        dn    = dh_t ⊙ (1 - z)     dz = dh_t ⊙ (h_{t-1} - n)
        da_n  = dn ⊙ (1 - n²)      dr = da_n ⊙ hn
        du_t  = [dr ⊙ r(1-r), dz ⊙ z(1-z), da_n]       dv_t = [du_r, du_z, da_n ⊙ r]   (B, 3H)
        dp^ih_t = LN⁻¹'(γ_ih ⊙ du_t; v̂^ih_t)    dp^hh_t = LN⁻¹'(γ_hh ⊙ dv_t; v̂^hh_t)
        dx_t  = W_ihᵀ dp^ih_t
        dW_ih = Σ_t dp^ih_t x_tᵀ    dW_hh = Σ_t dp^hh_t h_{t-1}ᵀ
        db_ih = Σ_t du_t            db_hh = Σ_t dv_t
        dγ_ih = Σ_t du_t ⊙ v̂^ih_t   dγ_hh = Σ_t dv_t ⊙ v̂^hh_t

    Shapes: dy (T, B, H), dh_n (B, H); each may be None.
    Returns the gradients "x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "gamma_ih", "gamma_hh"
    and "h".
    """
    check_cache(cache, LNGRUCache, "lngru_forward")
    x, w_ih, w_hh, norm, rstd = cache.x, cache.w_ih, cache.w_hh, cache.norm, cache.rstd
    dy, d_final = loss_grads(cache, dy, dh_n)
    H = w_hh.shape[1]
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih, db_hh = np.zeros(3 * H), np.zeros(3 * H)
    dgamma_ih, dgamma_hh = np.zeros(3 * H), np.zeros(3 * H)

    def step(t, dh):
        nonlocal dw_ih, dw_hh, db_ih, db_hh, dgamma_ih, dgamma_hh  # the sums over steps
        r, z, n, hn = (cache.gates[name][t] for name in ("r", "z", "n", "hn"))
        dn = dh * (1.0 - z)                           # h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
        dz = dh * (cache.h_prev[t] - n)
        da_n = dn * (1.0 - n**2)                      # n = tanh(u_n + r ⊙ hn)
        dr = da_n * hn
        du = np.concatenate([dr * r * (1.0 - r), dz * z * (1.0 - z), da_n], axis=1)
        dv = np.concatenate([du[:, :2 * H], da_n * r], axis=1)
        db_ih += du.sum(axis=0)                       # u = γ_ih ⊙ v̂^ih + b_ih
        db_hh += dv.sum(axis=0)                       # v = γ_hh ⊙ v̂^hh + b_hh
        dgamma_ih += (du * norm["ih"][t]).sum(axis=0)
        dgamma_hh += (dv * norm["hh"][t]).sum(axis=0)
        dp_ih = _normalise_backward(cache.gamma_ih * du, norm["ih"][t], rstd["ih"][t])
        dp_hh = _normalise_backward(cache.gamma_hh * dv, norm["hh"][t], rstd["hh"][t])
        dx[t] = dp_ih @ w_ih                          # p^ih_t = W_ih x_t
        dw_ih += dp_ih.T @ x[t]
        dw_hh += dp_hh.T @ cache.h_prev[t]            # p^hh_t = W_hh h_{t-1}
        return (dh * z + dp_hh @ w_hh,)

    dh, (dh0,) = walk_back(step, dy, d_final, cache.valid, cache.reverse)
    return {"x": dx, "h0": dh0, "w_ih": dw_ih, "w_hh": dw_hh, **bias_grads(cache, db_ih, db_hh),
            "gamma_ih": dgamma_ih, "gamma_hh": dgamma_hh, "h": dh}

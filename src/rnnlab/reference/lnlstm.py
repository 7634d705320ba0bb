"""Layer-normalised LSTM in float64 NumPy: forward and backpropagation through time; the
LSTM's cell (:mod:`rnnlab.reference.lstm`) with its two projections and the cell state's
read-out normalised. The normalisation's pieces here also serve the layer-normalised GRU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    bias_grads,
    check_cache,
    float64_or,
    loss_grads,
    optional_float64,
    step_record,
    summed_bias,
    walk,
    walk_back,
)
from .lstm import LSTMCache, lstm_arguments, lstm_cell, lstm_cell_backward, lstm_sums

LN_EPS = 1e-5  # ε of every layer normalisation (Haste's and torch.nn.LayerNorm's)


@dataclass(frozen=True, eq=False)
class LNLSTMCache(LSTMCache):
    """What lnlstm_backward needs from lnlstm_forward.

    The fields of :class:`~rnnlab.reference.LSTMCache` (P = H, w_hr None), and
    gamma_ih, gamma_hh, gamma_c, beta_c   the normalisations' gains and β_c (None: absent)
    norm    {"ih", "hh": the normalised projections v̂ (T, B, 4H); "c": ĉ_t (T, B, H)}
    rstd    {"ih", "hh", "c": 1 / √(σ² + ε) of each normalisation, (T, B, 1)}
    """

    gamma_ih: np.ndarray
    gamma_hh: np.ndarray
    gamma_c: np.ndarray
    beta_c: np.ndarray | None
    norm: dict[str, np.ndarray]
    rstd: dict[str, np.ndarray]


def _normalise(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(v̂, 1/√(σ² + ε)) of v over its last axis: v̂ = (v - μ) / √(σ² + ε)."""
    centred = v - v.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + LN_EPS)
    return centred * rstd, rstd


def _normalise_backward(dv_hat: np.ndarray, v_hat: np.ndarray, rstd: np.ndarray) -> np.ndarray:
    """∂L/∂v from ∂L/∂v̂: rstd ⊙ (dv̂ - mean(dv̂) - v̂ ⊙ mean(dv̂ ⊙ v̂)), means over the last axis."""
    return rstd * (
        dv_hat
        - dv_hat.mean(axis=-1, keepdims=True)
        - v_hat * (dv_hat * v_hat).mean(axis=-1, keepdims=True)
    )


def lnlstm_forward(
    x,
    h0,
    c0,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    gamma_ih=None,
    gamma_hh=None,
    gamma_c=None,
    beta_c=None,
    *,
    lengths=None,
    reverse: bool = False,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], LNLSTMCache]:
    """Run one direction of a single-layer layer-normalised LSTM over a sequence.

    Layer normalisation (Ba, Kiros & Hinton 2016) of a vector v of n entries, with gain γ
    and bias β (β = 0 when absent), ε = LN_EPS = 1e-5:

        LN(v; γ, β) = γ ⊙ (v - μ) / √(σ² + ε) + β,   μ = Σ v / n,   σ² = Σ (v - μ)² / n

    At every valid step t of sample b, the gate blocks of W, b and γ in the order i, f, g, o
    (as Haste's LayerNormLSTM, with its i, g, f, o blocks reordered):

        a_t = LN(W_ih x_t; γ_ih) + b_ih + LN(W_hh h_{t-1}; γ_hh) + b_hh     (B, 4H)
        i_t, f_t, g_t, o_t, c_t   from a_t, as in lstm_forward
        h_t = o_t ⊙ tanh(LN(c_t; γ_c, β_c))
        y_t = h_t

    Each of the two projections is normalised over all 4H entries at once (one mean and
    one variance for the four gates, as Haste does); b_ih and b_hh are the β of those two
    normalisations (a separate β would only add to them). The carried cell state c_t is
    not normalised; only its read-out is.

    Lengths, padding steps and reverse: as every forward (:mod:`rnnlab.reference`).

    Shapes:
        x   (T, B, I)    w_ih  (4H, I)    b_ih  (4H,) or None    gamma_ih (4H,)
        h0  (B, H)       w_hh  (4H, H)    b_hh  (4H,) or None    gamma_hh (4H,)
        c0  (B, H)       gamma_c (H,)     beta_c (H,) or None
        lengths  (B,) integers in [1, T], or None: every sample runs all T steps
    The gains default to ones (None).

    Returns (y, (h_n, c_n), cache):
        y     (T, B, H)  outputs, 0 at padding steps
        h_n   (B, H)     c_n (B, H): the states after each sample's last step
        cache LNLSTMCache for lnlstm_backward; cache.gates holds "i", "f", "g", "o", "c"
    """
    x, valid, h0, c0, w_ih, w_hh, b_ih, b_hh, _ = lstm_arguments(
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, lengths, rows="(4H, H)"
    )
    T, B, _ = x.shape
    H = h0.shape[1]
    gamma_ih = float64_or("gamma_ih", gamma_ih, 1.0, "(4H,)", (4 * H,))
    gamma_hh = float64_or("gamma_hh", gamma_hh, 1.0, "(4H,)", (4 * H,))
    gamma_c = float64_or("gamma_c", gamma_c, 1.0, "(H,)", (H,))
    beta_c = optional_float64("beta_c", beta_c, "(H,)", (H,))
    bias = summed_bias(b_ih, b_hh)
    shift_c = 0.0 if beta_c is None else beta_c

    def step(t, h, c):
        v_ih, r_ih = _normalise(x[t] @ w_ih.T)            # (B, 4H): all four gates at once
        v_hh, r_hh = _normalise(h @ w_hh.T)
        a = gamma_ih * v_ih + gamma_hh * v_hh + bias      # (B, 4H)
        i, f, g, o, c_t = lstm_cell(a, c)
        c_hat, r_c = _normalise(c_t)
        h_t = o * np.tanh(gamma_c * c_hat + shift_c)      # (B, H)
        return ((h_t, c_t), {"i": i, "f": f, "g": g, "o": o, "c": c_t},
                {"ih": v_ih, "hh": v_hh, "c": c_hat}, {"ih": r_ih, "hh": r_hh, "c": r_c})

    gates = step_record(T, B, dict.fromkeys("ifgoc", H))
    norm = step_record(T, B, {"ih": 4 * H, "hh": 4 * H, "c": H})
    rstd = step_record(T, B, dict.fromkeys(norm, 1))
    y, (h, c), (h_prev, c_prev) = walk(step, (h0, c0), valid, reverse, gates, norm, rstd)
    cache = LNLSTMCache(
        x=x, h_prev=h_prev, valid=valid, reverse=reverse, gates=gates, c_prev=c_prev, w_ih=w_ih,
        w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, w_hr=None, gamma_ih=gamma_ih, gamma_hh=gamma_hh,
        gamma_c=gamma_c, beta_c=beta_c, norm=norm, rstd=rstd,
    )
    return y, (h, c), cache


def lnlstm_backward(dy, dh_n, dc_n, cache: LNLSTMCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for lnlstm_forward.

    Walking the steps backward (:mod:`rnnlab.reference`, every backward), with
    n_t = LN(c_t; γ_c, β_c), ĉ_t, v̂^ih_t, v̂^hh_t the
    normalised values and LN⁻¹'(d; v̂, rstd) = rstd ⊙ (d - mean(d) - v̂ ⊙ mean(d ⊙ v̂))
    the gradient through a normalisation (means over its entries):

        dh_t  = dy_t + W_hhᵀ dp^hh_{t+1}                (dh_n at the last step)
        dn_t  = dh_t ⊙ o_t ⊙ (1 - tanh²(n_t))           do_t = dh_t ⊙ tanh(n_t)
        dc_t  = f_{t+1} ⊙ dc_{t+1} + LN⁻¹'(γ_c ⊙ dn_t; ĉ_t)   (dc_n at the last step)
        di_t, dg_t, df_t, da_t   from dc_t and do_t, as in lstm_backward
        dp^ih_t = LN⁻¹'(γ_ih ⊙ da_t; v̂^ih_t)    dp^hh_t = LN⁻¹'(γ_hh ⊙ da_t; v̂^hh_t)
        dx_t  = W_ihᵀ dp^ih_t
        dW_ih = Σ_t dp^ih_t x_tᵀ    dW_hh = Σ_t dp^hh_t h_{t-1}ᵀ    db_ih = db_hh = Σ_t da_t
        dγ_ih = Σ_t da_t ⊙ v̂^ih_t   dγ_hh = Σ_t da_t ⊙ v̂^hh_t
        dγ_c  = Σ_t dn_t ⊙ ĉ_t      dβ_c  = Σ_t dn_t
        dh0   = W_hhᵀ dp^hh, dc0 = f ⊙ dc at the first processed step

    Shapes: dy (T, B, H), dh_n (B, H), dc_n (B, H); each may be None.
    Returns the gradients "x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "gamma_ih",
    "gamma_hh", "gamma_c", "beta_c" and "h".
    """
    check_cache(cache, LNLSTMCache, "lnlstm_forward")
    dy, d_final = loss_grads(cache, dy, dh_n, dc_n)
    x, w_ih, w_hh, norm, rstd = cache.x, cache.w_ih, cache.w_hh, cache.norm, cache.rstd
    shift_c = 0.0 if cache.beta_c is None else cache.beta_c
    dx, dw_ih, dw_hh, _, db = lstm_sums(cache)
    dgamma_ih, dgamma_hh = np.zeros_like(cache.gamma_ih), np.zeros_like(cache.gamma_hh)
    dgamma_c, dbeta_c = np.zeros_like(cache.gamma_c), np.zeros_like(cache.gamma_c)

    def step(t, dh, dc):
        nonlocal dw_ih, dw_hh, db, dgamma_ih, dgamma_hh, dgamma_c, dbeta_c  # sums over steps
        i, f, g, o = (cache.gates[name][t] for name in ("i", "f", "g", "o"))
        tanh_n = np.tanh(cache.gamma_c * norm["c"][t] + shift_c)
        do = dh * tanh_n                              # h_t = o_t ⊙ tanh(n_t)
        dn = dh * o * (1.0 - tanh_n**2)
        dgamma_c += (dn * norm["c"][t]).sum(axis=0)   # n_t = γ_c ⊙ ĉ_t + β_c
        dbeta_c += dn.sum(axis=0)
        dc = dc + _normalise_backward(
            cache.gamma_c * dn, norm["c"][t], rstd["c"][t]
        )                                             # c_t feeds c_{t+1} and n_t
        da = lstm_cell_backward(dc, do, i, f, g, o, cache.c_prev[t])
        db += da.sum(axis=0)                          # a_t = ... + b_ih + b_hh
        dgamma_ih += (da * norm["ih"][t]).sum(axis=0)  # a_t = γ_ih ⊙ v̂^ih_t + γ_hh ⊙ v̂^hh_t
        dgamma_hh += (da * norm["hh"][t]).sum(axis=0)
        dp_ih = _normalise_backward(cache.gamma_ih * da, norm["ih"][t], rstd["ih"][t])
        dp_hh = _normalise_backward(cache.gamma_hh * da, norm["hh"][t], rstd["hh"][t])
        dx[t] = dp_ih @ w_ih                          # p^ih_t = W_ih x_t
        dw_ih += dp_ih.T @ x[t]
        dw_hh += dp_hh.T @ cache.h_prev[t]            # p^hh_t = W_hh h_{t-1}
        return dp_hh @ w_hh, dc * f

    dh, (dh0, dc0) = walk_back(step, dy, d_final, cache.valid, cache.reverse)
    return {
        "x": dx, "h0": dh0, "c0": dc0, "w_ih": dw_ih, "w_hh": dw_hh, **bias_grads(cache, db),
        "gamma_ih": dgamma_ih, "gamma_hh": dgamma_hh, "gamma_c": dgamma_c,
        "beta_c": None if cache.beta_c is None else dbeta_c, "h": dh,
    }

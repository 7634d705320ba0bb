"""Layer-normalised LSTM, Triton backend (the tiled path's form).

The equations and their symbols are those of :mod:`rnnlab.reference.lnlstm`: a_t =
LN(W_ih x_t; γ_ih) + b_ih + LN(W_hh h_{t-1}; γ_hh) + b_hh, the LSTM's gates and cell,
m_t = o_t ⊙ tanh(n_t) with n_t = LN(c_t; γ_c, β_c), h_t = m_t; what the forward saves,
:class:`rnnlab.backends.contract.LSTMForward` (the activated gates and c_t).

A layer norm reduces over a whole row (all 4H entries of a projection, all H of c_t), so
the step kernels here own whole rows: one program per tile of ``ROWS`` samples, all four
gates of every unit in one (ROWS, 4, HP) block (the gate axis padded to 4 slots, the
units to HP, a power of two), instead of the other families' (batch, hidden) tiles.

Forward: W_ih x_t for all steps is one GEMM, normalised over all steps at once (b_ih +
b_hh are that normalisation's β); per step the GEMM h_{t-1}·W_hhᵀ, then one kernel
normalising it (γ_hh), adding the input side, the gates, c_t, LN(c_t) and h_t.
Backward: the three normalisations are recomputed for all steps before the loop (the
GEMM h_{t-1}·W_hhᵀ over all steps); per step one kernel (dh_t, dn_t, the backward of
LN(c_t) into dc_t, the gates', the backward of LN(W_hh h_{t-1}) into dp^hh_t) and the GEMM
dp^hh_t·W_hh; after the loop the backward of LN(W_ih x_t) and every parameter gradient
as one GEMM or reduction over all steps.

The row helpers (:func:`row_settings`, :func:`_normalise`, :func:`_normalise_backward`,
:func:`_recurrent_norm_backward`, the gate-slot pieces) are shared with :mod:`.lngru`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from rnnlab.backends._host import (
    empty_grad,
    input_grad,
    previous_states,
    project_inputs,
    sum_bias,
    valid_mask,
    weight_grad,
    zero_padding,
)
from rnnlab.backends._layer_norm import EPS, normalise, normalise_backward
from rnnlab.backends.contract import (
    LNLSTMGrads,
    LNLSTMWeights,
    LSTMForward,
    LSTMInferByForward,
    LSTMSaved,
    LSTMState,
    Sequence,
)
from rnnlab.backends.gpu import _common as C
from rnnlab.backends.gpu import _tuning
from rnnlab.backends.gpu.lstm import _cell, _gate_grads, _store_gates

_EPS = tl.constexpr(EPS)  # ε of every layer normalisation


# ----------------------------------------------------------------- row helpers


def row_settings(B: int, H: int) -> tuple[tuple[int], dict[str, int]]:
    """The grid and launch settings of a row kernel over B samples of H units: ROWS
    samples a program (a power of two, at most ``_tuning.TILE_B``) so that a (ROWS, 4, HP)
    block stays within ``_tuning.LN_BLOCK`` elements (one row at least), and its warps."""
    HP = triton.next_power_of_2(H)
    fit = max(1, min(_tuning.TILE_B, _tuning.LN_BLOCK // (4 * HP)))
    rows = 1 << (fit.bit_length() - 1)  # the power of two at or below
    wide = rows * 4 * HP > _tuning.LN_NARROW_BLOCK
    warps = _tuning.LN_WIDE_WARPS if wide else _tuning.NARROW_WARPS
    return (triton.cdiv(B, rows),), dict(ROWS=rows, HP=HP, num_warps=warps)


@triton.jit
def _slots(m2, NG: tl.constexpr):
    """The gate axis of a row block: slot indices (1, 4, 1) and the (ROWS, 4, HP) mask of
    the first NG slots' existing rows and units."""
    k = tl.arange(0, 4)[None, :, None]
    return k, m2[:, None, :] & (k < NG)


@triton.jit
def _load3(ptr, ofs, k, H, ok):
    """A (ROWS, 4, HP) block of a gate-major row layout: [b, k, j] at ptr + ofs[b, j] + k·H,
    fp32, 0 outside ok."""
    return C.load_f32(ptr + ofs[:, None, :] + k * H, ok)


@triton.jit
def _store3(ptr, ofs, k, H, value, ok):
    C.store(ptr + ofs[:, None, :] + k * H, value, ok)


@triton.jit
def _gate(v, k, g: tl.constexpr):
    """Gate slot g of a (ROWS, 4, HP) block, as (ROWS, HP)."""
    return tl.sum(tl.where(k == g, v, 0.0), axis=1)


@triton.jit
def _stack(a, b, c, d, k):
    """Four (ROWS, HP) blocks as the slots of one (ROWS, 4, HP) block."""
    return tl.where(k == 0, a[:, None, :], tl.where(k == 1, b[:, None, :],
                    tl.where(k == 2, c[:, None, :], d[:, None, :])))


@triton.jit
def _normalise(v, ok, N):
    """(v̂, rstd) of each row of a (ROWS, S, HP) block over its N entries where ok:
    v̂ = (v - μ)·rstd, rstd = 1/√(σ² + ε) (σ² the biased variance, two passes), v̂ = 0 and
    rstd (ROWS, 1, 1) outside ok (:func:`rnnlab.backends._layer_norm.normalise`)."""
    mean = tl.sum(tl.sum(tl.where(ok, v, 0.0), axis=2), axis=1) / N
    centred = tl.where(ok, v - mean[:, None, None], 0.0)
    var = tl.sum(tl.sum(centred * centred, axis=2), axis=1) / N
    rstd = (1.0 / tl.sqrt(var + _EPS))[:, None, None]
    return centred * rstd, rstd


@triton.jit
def _normalise_backward(d_hat, v_hat, rstd, N):
    """∂L/∂v from ∂L/∂v̂ over each row's N entries: rstd ⊙ (dv̂ - mean(dv̂) - v̂ ⊙
    mean(dv̂ ⊙ v̂)), d_hat and v_hat 0 outside the entries
    (:func:`rnnlab.backends._layer_norm.normalise_backward`)."""
    mean_d = tl.sum(tl.sum(d_hat, axis=2), axis=1)[:, None, None] / N
    mean_dv = tl.sum(tl.sum(d_hat * v_hat, axis=2), axis=1)[:, None, None] / N
    return rstd * (d_hat - mean_d - v_hat * mean_dv)


@triton.jit
def _gains(ptr, k, cols, H, ok):
    """A per-entry vector of a projection's G·H entries (a gain, a bias) as a (1, 4, HP)
    block, 0 outside ok."""
    return C.load_f32(ptr + k * H + cols[None, None, :], ok)


@triton.jit
def _recurrent_norm_backward(d, gamma_hh, v_hh, rstd_hh, dp_hh_seq, dpre_mm, ot, rows, cols,
                             tb, k, ok, vm, B, H, NG: tl.constexpr):
    """dp^hh_t, the gradient through LN(W_hh h_{t-1}; γ_hh) of the gradient d (ROWS, 4, HP)
    of its output, from v̂ and rstd of every step (v_hh at the step's offsets ot, rstd_hh
    (T, B)); stored, 0 at padding, for dW_hh (dp_hh_seq at ot) and for the next GEMM
    (dpre_mm (B, NG·H))."""
    valid = ok & vm[:, :, None]
    dp_hh = _normalise_backward(
        _gains(gamma_hh, k, cols, H, ok) * tl.where(valid, d, 0.0), _load3(v_hh, ot, k, H, valid),
        C.load_f32(rstd_hh + tb[:, None], (rows < B)[:, None] & vm)[:, :, None], NG * H,
    )
    dp_hh = tl.where(valid, dp_hh, 0.0)
    _store3(dp_hh_seq, ot, k, H, dp_hh, ok)
    _store3(dpre_mm, rows[:, None] * (NG * H) + cols[None, :], k, H, dp_hh, ok)


@triton.jit
def _read_out(c, gamma_c, beta_c, cols, ok, m2, H, HAS_BETA_C: tl.constexpr):
    """n = LN(c; γ_c, β_c) of a (ROWS, HP) block of cell states, with ĉ and its rstd (each
    (ROWS, 1, HP) / (ROWS, 1, 1))."""
    c_hat, rstd = _normalise(c[:, None, :], m2[:, None, :], H)
    n = C.load_f32(gamma_c + cols, ok)[None, :] * tl.sum(c_hat, axis=1)
    if HAS_BETA_C:
        n += C.load_f32(beta_c + cols, ok)[None, :]
    return n, c_hat, rstd


# ----------------------------------------------------------------- step kernels


@triton.jit(do_not_specialize=["s"])
def _lnlstm_fwd_rows(
    s, gx, gh, gamma_hh, gamma_c, beta_c, c_state, h_state, h_mm, lens_ptr, probe, y, gates,
    c_seq,
    B, H,
    ROWS: tl.constexpr, HP: tl.constexpr, HAS_BETA_C: tl.constexpr, HAS_PROBE: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """One step after the GEMM gh = h_{t-1}·W_hhᵀ (B, 4H); gx holds LN(W_ih x_t; γ_ih) + b
    for all steps."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, ROWS, HP, REVERSE)
    k, ok = _slots(m2, 4)
    tb = t * B + rows
    gt = tb[:, None] * (4 * H) + cols[None, :]
    ct = tb[:, None] * H + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    v_hat, _ = _normalise(_load3(gh, rows[:, None] * (4 * H) + cols[None, :], k, H, ok), ok,
                          4 * H)
    a = (_load3(gx, gt, k, H, ok & vm[:, :, None])  # (ROWS, 4, HP) pre-activations
         + _gains(gamma_hh, k, cols, H, ok) * v_hat)
    c = C.load_f32(c_state + st, m2)
    i, f, g, o, c_t, _ = _cell(_gate(a, k, 0), _gate(a, k, 1), _gate(a, k, 2), _gate(a, k, 3), c)
    n, _, _ = _read_out(c_t, gamma_c, beta_c, cols, cols < H, m2, H, HAS_BETA_C)
    C.store(c_state + st, tl.where(vm, c_t, c), m2)
    C.store(c_seq + ct, tl.where(vm, c_t, 0.0), m2)
    _store_gates(gates, gt, i, f, g, o, vm, m2, H)
    h = C.load_f32(h_state + st, m2)
    C.commit_step(o * C.tanh(n), h, probe, y, h_state, h_mm, ct, st, m2, vm, HAS_PROBE)


@triton.jit(do_not_specialize=["s"])
def _lnlstm_bwd_rows(
    s, dy, rec, dh_dir, dc_state, gates, c_seq, c_prev_seq, v_hh, rstd_hh, gamma_hh,
    gamma_c, beta_c, lens_ptr, dgates, dn_seq, dp_hh_seq, dpre_mm, dh_seq,
    B, H,
    ROWS: tl.constexpr, HP: tl.constexpr, HAS_BETA_C: tl.constexpr, STORE_DH: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """One step back from dh_t = dy_t + dh_dir + rec (rec = dp^hh_{t+1}·W_hh from the last
    GEMM); v_hh, rstd_hh: LN(W_hh h_{t-1})'s v̂ (T, B, 4H) and rstd (T, B) of every step.
    Leaves dp^hh_t in dpre_mm for the next GEMM."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, ROWS, HP, REVERSE)
    mv = m2 & vm
    k, ok = _slots(m2, 4)
    tb = t * B + rows
    gt = tb[:, None] * (4 * H) + cols[None, :]
    ct = tb[:, None] * H + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    dh_next = C.load_f32(dh_dir + st, m2) + C.load_f32(rec + st, m2)
    dh = C.load_f32(dy + ct, mv) + dh_next  # from the output and from step t+1
    C.store(dh_dir + st, tl.where(vm, 0.0, dh_next), m2)  # padding: the state passes through
    if STORE_DH:
        C.store(dh_seq + ct, tl.where(vm, dh, 0.0), m2)
    i = C.load_f32(gates + gt, mv)
    f = C.load_f32(gates + gt + H, mv)
    g = C.load_f32(gates + gt + 2 * H, mv)
    o = C.load_f32(gates + gt + 3 * H, mv)
    n, c_hat, rstd_c = _read_out(C.load_f32(c_seq + ct, mv), gamma_c, beta_c, cols, cols < H,
                                 m2, H, HAS_BETA_C)
    tanh_n = C.tanh(n)
    dn = tl.where(vm, dh * o * (1.0 - tanh_n * tanh_n), 0.0)  # h = o ⊙ tanh(n)
    C.store(dn_seq + ct, dn, m2)
    dn_hat = (C.load_f32(gamma_c + cols, cols < H)[None, :] * dn)[:, None, :]
    dc_next = C.load_f32(dc_state + st, m2)
    dc = dc_next + tl.sum(  # from c_{t+1} and through n_t = LN(c_t)
        _normalise_backward(dn_hat, c_hat, rstd_c, H), axis=1)
    dpi, dpf, dpg, dpo, dc_prev = _gate_grads(dc, dh * tanh_n, i, f, g, o,  # do = dh ⊙ tanh(n)
                                              C.load_f32(c_prev_seq + ct, mv))
    C.store(dc_state + st, tl.where(vm, dc_prev, dc_next), m2)
    _store_gates(dgates, gt, dpi, dpf, dpg, dpo, vm, m2, H)
    _recurrent_norm_backward(_stack(dpi, dpf, dpg, dpo, k), gamma_hh, v_hh, rstd_hh, dp_hh_seq,
                             dpre_mm, gt, rows, cols, tb, k, ok, vm, B, H, 4)


# ----------------------------------------------------------------- host functions


def _tiled_forward(gx, h0, c0, w, gamma_hh, gamma_c, beta_c, lens, h_probe, *, reverse):
    """Per step: the GEMM gh = h·W_hhᵀ and one row kernel."""
    T, B, G = gx.shape
    H = c0.shape[-1]
    y = gx.new_empty(T, B, H)
    gates = torch.empty_like(gx)
    c_seq = gx.new_empty(T, B, H)
    probe = h_probe if h_probe is not None else y
    h_state, h_mm = C.tiled_state(h0, w)
    c_state = c0.to(torch.float32, copy=True).contiguous()  # fp32, never c0 itself
    gh = torch.empty(B, G, dtype=w.dtype, device=gx.device)
    grid, settings = row_settings(B, H)
    for s in range(T):
        torch.mm(h_mm, w.t(), out=gh)
        _lnlstm_fwd_rows[grid](
            s, gx, gh, gamma_hh, gamma_c, beta_c if beta_c is not None else gamma_c, c_state,
            h_state, h_mm, lens, probe, y, gates, c_seq, B, H, HAS_BETA_C=beta_c is not None,
            HAS_PROBE=h_probe is not None, REVERSE=reverse, **settings,
        )
    return y, h_state.to(gx.dtype), c_state.to(gx.dtype), gates, c_seq


def _tiled_backward(dy, dh_n, dc_n, w, gates, c_seq, c_prev_seq, v_hh, rstd_hh, gamma_hh,
                    gamma_c, beta_c, lens, *, reverse, need_dh):
    """Per step back: one row kernel, then the GEMM rec = dp^hh·W_hh."""
    T, B, G = gates.shape
    H = c_seq.shape[-1]
    dgates = torch.empty_like(gates)  # gradients of the pre-activations a_t
    dn_seq = torch.empty_like(c_seq)  # gradients of n_t
    dp_hh_seq = torch.empty_like(gates)  # gradients of W_hh h_{t-1}
    dh_seq = torch.empty_like(c_seq) if need_dh else dn_seq
    dh_dir = dh_n.to(torch.float32, copy=True).contiguous()  # dh_next minus the GEMM part
    dc_state = dc_n.to(torch.float32, copy=True).contiguous()
    rec = torch.zeros(B, H, dtype=w.dtype, device=gates.device)  # dp^hh_{t+1}·W_hh
    dpre_mm = torch.empty(B, G, dtype=w.dtype, device=gates.device)
    grid, settings = row_settings(B, H)
    for s in range(T - 1, -1, -1):
        _lnlstm_bwd_rows[grid](
            s, dy, rec, dh_dir, dc_state, gates, c_seq, c_prev_seq, v_hh, rstd_hh, gamma_hh,
            gamma_c, beta_c if beta_c is not None else gamma_c, lens, dgates, dn_seq,
            dp_hh_seq, dpre_mm, dh_seq, B, H, HAS_BETA_C=beta_c is not None, STORE_DH=need_dh,
            REVERSE=reverse, **settings,
        )
        torch.mm(dpre_mm, w, out=rec)
    dh0 = (dh_dir + rec.float()).to(dh_n.dtype)
    return dgates, dn_seq, dp_hh_seq, dh0, dc_state.to(dc_n.dtype), dh_seq


class GpuLNLSTM(LSTMInferByForward):
    """Layer-normalised LSTM, Triton (:class:`rnnlab.backends.contract.LNLSTMKernels`)."""

    def forward(
        self, w: LNLSTMWeights, seq: Sequence, state: LSTMState, h_probe: Tensor | None
    ) -> LSTMForward:
        (x, lengths, reverse), (h0, c0) = seq, state
        T, B, _ = x.shape
        H = c0.shape[-1]
        gx = F.layer_norm(  # LN(W_ih x_t; γ_ih) + b_ih + b_hh, all steps; padding rows unread
            project_inputs(x, w.w_ih, None), (4 * H,), w.gamma_ih, sum_bias(w.b_ih, w.b_hh), EPS
        ).contiguous()
        beta_c = w.beta_c.contiguous() if w.beta_c is not None else None
        y, h_n, c_n, gates, c_seq = C.run_tiled(
            "lnlstm_forward", _tiled_forward,
            (gx, h0, c0, w.w_hh.contiguous(), w.gamma_hh.contiguous(), w.gamma_c.contiguous(),
             beta_c, C.full_lengths(lengths, T, B, x.device),
             h_probe.contiguous() if h_probe is not None else None),
            reverse=reverse,
        )
        return LSTMForward(y, h_n, c_n, gates, c_seq)

    def backward(
        self, w: LNLSTMWeights, seq: Sequence, state: LSTMState, saved: LSTMSaved, dy: Tensor,
        d_state: LSTMState, need_dh: bool, need_dx: bool,
    ) -> LNLSTMGrads:
        (x, lengths, reverse), (h0, c0), (y, gates, c_seq) = seq, state, saved
        dh_n, dc_n = d_state
        T, B, _ = x.shape
        x = zero_padding(x, valid_mask(lengths, T))
        h_prev_seq = previous_states(y, h0, lengths, reverse)
        c_prev_seq = previous_states(c_seq, c0, lengths, reverse).contiguous()
        # the three normalisations of every step, recomputed in fp32 (for bf16 too)
        v_ih, rstd_ih = normalise(project_inputs(x, w.w_ih, None).float())  # (T, B, 4H)
        v_hh, rstd_hh = normalise(project_inputs(h_prev_seq, w.w_hh, None).float())
        c_hat, _ = normalise(c_seq.float())  # (T, B, H)
        beta_c = w.beta_c.contiguous() if w.beta_c is not None else None
        dgates, dn_seq, dp_hh_seq, dh0, dc0, dh_seq = C.run_tiled(
            "lnlstm_backward", _tiled_backward,
            (dy.contiguous(), dh_n, dc_n, w.w_hh.contiguous(), gates.contiguous(),
             c_seq.contiguous(), c_prev_seq, v_hh, rstd_hh.contiguous(),
             w.gamma_hh.contiguous(), w.gamma_c.contiguous(), beta_c,
             C.full_lengths(lengths, T, B, x.device)),
            reverse=reverse, need_dh=need_dh,
        )
        dp_ih = normalise_backward(dgates.float() * w.gamma_ih, v_ih, rstd_ih).to(x.dtype)
        return LNLSTMGrads(
            dx=input_grad(dp_ih, w.w_ih, need_dx),
            dh0=dh0,
            dc0=dc0,
            dw_ih=weight_grad(dp_ih, x),
            dw_hh=weight_grad(dp_hh_seq, h_prev_seq),
            db=dgates.sum(dim=(0, 1)),
            dgamma_ih=(dgates * v_ih).sum(dim=(0, 1)).to(x.dtype),
            dgamma_hh=(dgates * v_hh).sum(dim=(0, 1)).to(x.dtype),
            dgamma_c=(dn_seq * c_hat).sum(dim=(0, 1)).to(x.dtype),
            dbeta_c=dn_seq.sum(dim=(0, 1)) if beta_c is not None else empty_grad(y),
            dh=dh_seq if need_dh else empty_grad(y),
        )

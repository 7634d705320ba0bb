"""LSTM with recurrent dropout and zoneout (with optional projection), Triton backend:
the tiled path of :mod:`.lstm` with the masks added.

The equations and symbols are those of :mod:`rnnlab.reference.lstm_masked` (d the
recurrent dropout multiplier, u_{t-1} = d ⊙ h_{t-1} what the recurrent product reads, k^h,
k^c the zoneout shares); what the forward saves, :class:`rnnlab.backends.contract.
MaskedLSTMForward`. Per step, as the plain LSTM's tiled path: the GEMM gh = u_{t-1}·W_hhᵀ
and one fused pointwise kernel (gates, c̃_t, zoneout of c, m_t and, without projection,
zoneout of h and u_t = d ⊙ h_t for the next GEMM); a projection adds the GEMM
h̃_t = m_t·W_hrᵀ and a small kernel that finishes the step. Back: one pointwise kernel and
the GEMM du = da·W_hh per step (with a projection, a small kernel and the GEMM
dm = dh̃·W_hr before it); d multiplies du where the next step back reads it. Every call
takes this path, whatever ``RNNLAB_GPU_PATH`` says (the masked cells have no persistent
or cooperative kernel); ``RNNLAB_GPU_GRAPHS=1`` replays it as the plain one's.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from rnnlab.backends._host import (
    empty_grad,
    parameter_grads,
    previous_states,
    project_inputs,
    projection_grad,
    sum_bias,
    valid_mask,
    zero_padding,
)
from rnnlab.backends.contract import (
    LSTMGrads,
    LSTMState,
    LSTMWeights,
    MaskedLSTMForward,
    MaskedLSTMSaved,
    Masks,
    Sequence,
)
from rnnlab.backends.gpu import _common as C
from rnnlab.backends.gpu.lstm import (
    _saved_cell_grad,
    _store_gates,
    _tile_cell,
    _tile_offsets,
    _tiled_steps,
    _tiled_steps_back,
)

__all__ = ["GpuMaskedLSTM"]


@triton.jit(do_not_specialize=["s"])
def _fwd_tile(
    s, gx, gh, c_state, h_state, u_mm, m_mm, lens_ptr, probe, y, gates, c_seq, c_tilde_seq,
    drop_h, keep_h, kh_t, kh_b, kh_n, keep_c, kc_t, kc_b, kc_n,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, HAS_PROJ: tl.constexpr,
    HAS_PROBE: tl.constexpr, HAS_DROP: tl.constexpr, HAS_KEEP_H: tl.constexpr,
    HAS_KEEP_C: tl.constexpr, REVERSE: tl.constexpr,
):
    """One step after the GEMM gh = u_{t-1}·W_hhᵀ (B, 4H). With a projection it leaves m_t
    in m_mm for the GEMM h̃_t = m_t·W_hrᵀ and ``_commit_tile`` finishes the step."""
    rows, cols, m2, t, vm, mv, gt, ct, st, rt = _tile_offsets(
        s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE
    )
    c = C.load_f32(c_state + st, m2)
    i, f, g, o, c_tilde, m_t = _tile_cell(gx, gh, gt, rt, c, mv, m2, H)
    c_t = C.zone(c_tilde, c, keep_c, C.keep_offsets(t, rows, cols, kc_t, kc_b, kc_n), mv,
                 HAS_KEEP_C)
    C.store(c_state + st, tl.where(vm, c_t, c), m2)
    C.store(c_seq + ct, tl.where(vm, c_t, 0.0), m2)
    C.store(c_tilde_seq + ct, tl.where(vm, c_tilde, 0.0), m2)
    _store_gates(gates, gt, i, f, g, o, vm, m2, H)
    if HAS_PROJ:
        C.store(m_mm + st, m_t, m2)
    else:  # h̃_t = m_t
        C.commit_masked_step(
            m_t, C.load_f32(h_state + st, m2), keep_h,
            C.keep_offsets(t, rows, cols, kh_t, kh_b, kh_n), drop_h, probe, y, h_state, u_mm,
            ct, st, m2, vm, HAS_KEEP_H, HAS_DROP, HAS_PROBE,
        )


@triton.jit(do_not_specialize=["s"])
def _commit_tile(
    s, hp, h_state, u_mm, lens_ptr, probe, y, drop_h, keep_h, kh_t, kh_b, kh_n,
    B, P,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, HAS_PROBE: tl.constexpr,
    HAS_DROP: tl.constexpr, HAS_KEEP_H: tl.constexpr, REVERSE: tl.constexpr,
):
    """Projection, end of a step: h̃_t = hp, zoneout of h, the probe, u_t = d ⊙ h_t."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, P, TILE_B, TILE_H, REVERSE)
    yt = (t * B + rows)[:, None] * P + cols[None, :]
    st = rows[:, None] * P + cols[None, :]
    C.commit_masked_step(
        C.load_f32(hp + st, m2), C.load_f32(h_state + st, m2), keep_h,
        C.keep_offsets(t, rows, cols, kh_t, kh_b, kh_n), drop_h, probe, y, h_state, u_mm, yt,
        st, m2, vm, HAS_KEEP_H, HAS_DROP, HAS_PROBE,
    )


@triton.jit(do_not_specialize=["s"])
def _dh_tile(
    s, dy, rec, dh_dir, lens_ptr, drop_h, keep_h, kh_t, kh_b, kh_n, dh_mm, dh_seq,
    dh_tilde_seq,
    B, P,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, STORE_DH: tl.constexpr,
    HAS_DROP: tl.constexpr, HAS_KEEP_H: tl.constexpr, REVERSE: tl.constexpr,
):
    """Projection, start of a step back: dh_t, and dh̃_t for the GEMM dm = dh̃·W_hr (and
    dW_hr)."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, P, TILE_B, TILE_H, REVERSE)
    yt = (t * B + rows)[:, None] * P + cols[None, :]
    st = rows[:, None] * P + cols[None, :]
    dh_next, dh, dh_tilde, carried = C.masked_grad_start(
        C.load_f32(rec + st, m2), dy, dh_dir, drop_h, keep_h, yt, st,
        C.keep_offsets(t, rows, cols, kh_t, kh_b, kh_n), m2, vm, HAS_DROP, HAS_KEEP_H,
    )
    dh_tilde = tl.where(vm, dh_tilde, 0.0)
    C.store(dh_mm + st, dh_tilde, m2)
    C.store(dh_tilde_seq + yt, dh_tilde, m2)
    if STORE_DH:
        C.store(dh_seq + yt, tl.where(vm, dh, 0.0), m2)
    C.store(dh_dir + st, tl.where(vm, carried, dh_next), m2)  # padding: passes through


@triton.jit(do_not_specialize=["s"])
def _bwd_tile(
    s, dy, rec, dh_dir, dm_buf, dc_state, gates, c_tilde_seq, c_prev_seq, lens_ptr, drop_h,
    keep_h, kh_t, kh_b, kh_n, keep_c, kc_t, kc_b, kc_n, dgates, dpre_mm, dh_seq,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, HAS_PROJ: tl.constexpr,
    STORE_DH: tl.constexpr, HAS_DROP: tl.constexpr, HAS_KEEP_H: tl.constexpr,
    HAS_KEEP_C: tl.constexpr, REVERSE: tl.constexpr,
):
    """One step back. Without a projection dh_t = dy_t + dh_dir + d ⊙ rec (rec = da_{t+1}·W_hh
    from the last GEMM) and dm_t = dh̃_t; with one, dm_t was computed by ``_dh_tile`` and a
    GEMM. The cell's gradients are the plain LSTM's with c̃_t for c_t and dc̃_t for dc_t."""
    rows, cols, m2, t, vm, mv, gt, ct, st, rt = _tile_offsets(
        s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE
    )
    if HAS_PROJ:
        dm = C.load_f32(dm_buf + st, m2)
    else:
        dh_next, dh, dm, carried = C.masked_grad_start(
            C.load_f32(rec + st, m2), dy, dh_dir, drop_h, keep_h, ct, st,
            C.keep_offsets(t, rows, cols, kh_t, kh_b, kh_n), m2, vm, HAS_DROP, HAS_KEEP_H,
        )
        C.store(dh_dir + st, tl.where(vm, carried, dh_next), m2)  # padding: passes through
        if STORE_DH:
            C.store(dh_seq + ct, tl.where(vm, dh, 0.0), m2)
    dc = C.load_f32(dc_state + st, m2)
    dc_carried = tl.zeros_like(dc)  # c_t = k^c ⊙ c_{t-1} + (1 - k^c) ⊙ c̃_t
    if HAS_KEEP_C:
        dc_carried = C.load_f32(keep_c + C.keep_offsets(t, rows, cols, kc_t, kc_b, kc_n), mv) * dc
    dpi, dpf, dpg, dpo, dc_prev = _saved_cell_grad(  # c_{t-1} gets f_t ⊙ dc̃_t
        dm, dc - dc_carried, gates, c_tilde_seq, c_prev_seq, gt, ct, mv, vm, H
    )
    C.store(dc_state + st, tl.where(vm, dc_prev + dc_carried, dc), m2)
    _store_gates(dgates, gt, dpi, dpf, dpg, dpo, vm, m2, H)
    _store_gates(dpre_mm, rt, dpi, dpf, dpg, dpo, vm, m2, H)  # for the GEMM rec = da·W_hh


# ----------------------------------------------------------------- host functions


def _tiled_forward(gx, h0, c0, w, w_r, drop_h, keep_h, keep_c, lens, h_probe, *, reverse):
    """The plain LSTM's loop (``lstm._tiled_steps``) with u in the GEMM and this module's
    kernels in each step."""
    T, B, _ = gx.shape
    H, P = c0.shape[-1], h0.shape[-1]
    y = gx.new_empty(T, B, P)
    gates = torch.empty_like(gx)
    c_seq = gx.new_empty(T, B, H)
    c_tilde = gx.new_empty(T, B, H)
    probe = h_probe if h_probe is not None else y
    h_state = h0.to(torch.float32, copy=True).contiguous()  # fp32 states, never h0/c0
    c_state = c0.to(torch.float32, copy=True).contiguous()
    u_mm = C.dropped(drop_h, h_state).to(w.dtype)  # u_0 = d ⊙ h_0; fp32 without d: h_state
    h_masks, h_flags = C.h_masks(drop_h, keep_h, y)
    c_masks = C.keep_strides(keep_c, y)
    flags = dict(**C.tile_sizes(), **h_flags, HAS_PROBE=h_probe is not None, REVERSE=reverse)

    def cell(s, gh, m_mm):
        _fwd_tile[C.tile_grid(B, H)](
            s, gx, gh, c_state, h_state, u_mm, m_mm, lens, probe, y, gates, c_seq, c_tilde,
            *h_masks, *c_masks, B, H, HAS_PROJ=w_r is not None, HAS_KEEP_C=keep_c is not None,
            **flags,
        )

    def commit(s, hp):
        _commit_tile[C.tile_grid(B, P)](s, hp, h_state, u_mm, lens, probe, y, *h_masks, B, P,
                                        **flags)

    _tiled_steps(T, u_mm, w, w_r, H, cell, commit)
    return y, h_state.to(gx.dtype), c_state.to(gx.dtype), gates, c_seq, c_tilde


def _tiled_backward(dy, dh_n, dc_n, w, w_r, drop_h, keep_h, keep_c, gates, c_tilde,
                    c_prev_seq, lens, *, reverse, need_dh):
    """The plain LSTM's loop back (``lstm._tiled_steps_back``) with this module's kernels;
    rec = da·W_hh is ∂L/∂u_t, which the kernels multiply by d."""
    T, B, _ = gates.shape
    H, P = c_tilde.shape[-1], dh_n.shape[-1]
    dgates = torch.empty_like(gates)
    dh_seq = dy.new_empty(T, B, P) if need_dh else dgates
    dh_tilde_seq = dy.new_empty(T, B, P) if w_r is not None else dgates  # for dW_hr
    dh_dir = dh_n.to(torch.float32, copy=True).contiguous()  # dh_next less d ⊙ rec
    dc_state = dc_n.to(torch.float32, copy=True).contiguous()
    h_masks, h_flags = C.h_masks(drop_h, keep_h, dgates)
    c_masks = C.keep_strides(keep_c, dgates)
    flags = dict(**C.tile_sizes(), **h_flags, STORE_DH=need_dh, REVERSE=reverse)

    def start(s, rec, dh_mm):
        _dh_tile[C.tile_grid(B, P)](s, dy, rec, dh_dir, lens, *h_masks, dh_mm, dh_seq,
                                    dh_tilde_seq, B, P, **flags)

    def cell(s, rec, dm, dpre_mm):
        _bwd_tile[C.tile_grid(B, H)](
            s, dy, rec, dh_dir, dm, dc_state, gates, c_tilde, c_prev_seq, lens, *h_masks,
            *c_masks, dgates, dpre_mm, dh_seq, B, H, HAS_PROJ=w_r is not None,
            HAS_KEEP_C=keep_c is not None, **flags,
        )

    rec = _tiled_steps_back(T, B, H, P, w, w_r, start, cell)
    dh0 = (dh_dir + C.dropped(drop_h, rec.float())).to(dh_n.dtype)
    return dgates, dh0, dc_state.to(dc_n.dtype), dh_seq, dh_tilde_seq


class GpuMaskedLSTM:
    """LSTM with recurrent dropout and zoneout, Triton
    (:class:`rnnlab.backends.contract.MaskedLSTMKernels`)."""

    def forward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks,
        h_probe: Tensor | None,
    ) -> MaskedLSTMForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh, w_hr), (h0, c0) = seq, w, state
        T, B, _ = x.shape
        gx = project_inputs(x, w_ih, sum_bias(b_ih, b_hh)).contiguous()  # padding rows unread
        args = (
            gx, h0, c0, w_hh.contiguous(), w_hr.contiguous() if w_hr is not None else None,
            *masks, C.full_lengths(lengths, T, B, x.device),
            h_probe.contiguous() if h_probe is not None else None,
        )
        return MaskedLSTMForward(
            *C.run_tiled("masked_lstm_forward", _tiled_forward, args, reverse=reverse)
        )

    def backward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks,
        saved: MaskedLSTMSaved, dy: Tensor, d_state: LSTMState, need_dh: bool, need_dx: bool,
    ) -> LSTMGrads:
        (x, lengths, reverse), (h0, c0), (y, gates, c_seq, c_tilde) = seq, state, saved
        (w_ih, w_hh, w_hr), (dh_n, dc_n) = (w.w_ih, w.w_hh, w.w_hr), d_state
        T, B, _ = x.shape
        x = zero_padding(x, valid_mask(lengths, T))
        c_prev_seq = previous_states(c_seq, c0, lengths, reverse).contiguous()
        args = (
            dy.contiguous(), dh_n, dc_n, w_hh.contiguous(),
            w_hr.contiguous() if w_hr is not None else None, *masks,
            gates.contiguous(), c_tilde.contiguous(), c_prev_seq,
            C.full_lengths(lengths, T, B, x.device),
        )
        dgates, dh0, dc0, dh_seq, dh_tilde_seq = C.run_tiled(
            "masked_lstm_backward", _tiled_backward, args, reverse=reverse, need_dh=need_dh
        )
        drop_h = masks.drop_h
        dx, dw_ih, dw_hh, db = parameter_grads(  # W_hh reads u_{t-1} = d ⊙ h_{t-1}
            dgates, x, w_ih, C.dropped(drop_h, y), C.dropped(drop_h, h0), lengths, reverse,
            need_dx,
        )
        if w_hr is not None:  # h̃_t = W_hr m_t, m_t = o ⊙ tanh(c̃_t)
            dw_hr = projection_grad(dh_tilde_seq, gates, c_tilde)
        else:
            dw_hr = empty_grad(y)
        dh_out = dh_seq if need_dh else empty_grad(y)
        return LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, dh_out)


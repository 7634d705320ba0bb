"""GRU, Triton backend, both placements of the reset gate.

The equations and their symbols are those of :mod:`rnnlab.reference.gru`; what the
forward saves, :class:`rnnlab.backends.contract.GRUForward`. b_ih goes into the input
projection; b_hh is added inside the recurrence (it sits inside r ⊙ (·) with the reset
after).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from rnnlab.backends._host import (
    empty_grad,
    gru_parameter_grads,
    previous_states,
    project_inputs,
    valid_mask,
    zero_padding,
)
from rnnlab.backends.contract import (
    GRUForward,
    GRUGrads,
    GRUInferByForward,
    GRUSaved,
    GRUWeights,
    Sequence,
)
from rnnlab.backends.gpu import _common as C
from rnnlab.backends.gpu import _coop as X


@triton.jit
def _recurrent_bias(b_hh, cols, ok, H, N: tl.constexpr, HAS_BIAS: tl.constexpr):
    """b_hr, b_hz, b_hn at these N hidden units (zeros without a bias), fp32."""
    b_r = tl.zeros((N,), tl.float32)
    b_z = tl.zeros((N,), tl.float32)
    b_n = tl.zeros((N,), tl.float32)
    if HAS_BIAS:
        b_r = C.load_f32(b_hh + cols, ok)
        b_z = C.load_f32(b_hh + H + cols, ok)
        b_n = C.load_f32(b_hh + 2 * H + cols, ok)
    return b_r, b_z, b_n


@triton.jit
def _store_gates(gates, gt, r, z, n, hn, vm, m2, H):
    C.store(gates + gt, tl.where(vm, r, 0.0), m2)
    C.store(gates + gt + H, tl.where(vm, z, 0.0), m2)
    C.store(gates + gt + 2 * H, tl.where(vm, n, 0.0), m2)
    C.store(gates + gt + 3 * H, tl.where(vm, hn, 0.0), m2)


@triton.jit
def _store_dgx(dgx, xt, dr_pre, dz_pre, dn_pre, m2, H):
    C.store(dgx + xt, dr_pre, m2)
    C.store(dgx + xt + H, dz_pre, m2)
    C.store(dgx + xt + 2 * H, dn_pre, m2)


# ----------------------------------------------------------------- persistent path


@triton.jit
def _weights_on_chip(w_hh, cols, col_ok, H, TRANSPOSED: tl.constexpr):
    """W_hh per gate (r, z, n) as (HP, HP) blocks, on chip for the whole sequence:
    TRANSPOSED (the forward's h·Wᵀ) [k, j] = W_hh[gH + j, k], else [j, k] = W_hh[gH + j, k]."""
    w_r = C.gate_block(w_hh, 0, cols, col_ok, cols, col_ok, H, H, TRANSPOSED)
    w_z = C.gate_block(w_hh, 1, cols, col_ok, cols, col_ok, H, H, TRANSPOSED)
    w_n = C.gate_block(w_hh, 2, cols, col_ok, cols, col_ok, H, H, TRANSPOSED)
    return w_r, w_z, w_n


@triton.jit
def _gru_fwd_persistent(
    gx, h0, w_hh, b_hh, lens_ptr, probe, y, h_n, gates,
    T, B, H,
    HP: tl.constexpr, BLOCK_B: tl.constexpr, HAS_BIAS: tl.constexpr, RESET_AFTER: tl.constexpr,
    HAS_PROBE: tl.constexpr, REVERSE: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows, row_ok, lens = C.persistent_rows(lens_ptr, B, BLOCK_B)
    cols, col_ok, m2 = C.lanes(row_ok, H, HP)
    w_r, w_z, w_n = _weights_on_chip(w_hh, cols, col_ok, H, True)
    b_r, b_z, b_n = _recurrent_bias(b_hh, cols, col_ok, H, HP, HAS_BIAS)
    h = C.load_f32(h0 + rows[:, None] * H + cols[None, :], m2)  # (BLOCK_B, HP) fp32 state
    for s in range(T):
        t, valid = C.step_time(s, lens, REVERSE)
        vm = valid[:, None]
        mv = m2 & vm
        tb = t * B + rows
        xt = tb[:, None] * (3 * H) + cols[None, :]  # r of step t in gx; z, n follow by H
        gt = tb[:, None] * (4 * H) + cols[None, :]
        ht = tb[:, None] * H + cols[None, :]
        r = tl.sigmoid(C.load_f32(gx + xt, mv) + C.mm(h, w_r, UPCAST, PRECISION) + b_r[None, :])
        z = tl.sigmoid(
            C.load_f32(gx + xt + H, mv) + C.mm(h, w_z, UPCAST, PRECISION) + b_z[None, :]
        )
        if RESET_AFTER:
            hn = C.mm(h, w_n, UPCAST, PRECISION) + b_n[None, :]
            n = C.tanh(C.load_f32(gx + xt + 2 * H, mv) + r * hn)
        else:
            hn = C.mm(r * h, w_n, UPCAST, PRECISION) + b_n[None, :]
            n = C.tanh(C.load_f32(gx + xt + 2 * H, mv) + hn)
        h_t = n + z * (h - n)
        if HAS_PROBE:
            h_t += C.load_f32(probe + ht, mv)
        h = tl.where(vm, h_t, h)
        C.store(y + ht, tl.where(vm, h_t, 0.0), m2)
        _store_gates(gates, gt, r, z, n, hn, vm, m2, H)
    C.store(h_n + rows[:, None] * H + cols[None, :], h, m2)


@triton.jit
def _gru_bwd_persistent(
    dy, dh_n, w_hh, gates, h_prev_seq, lens_ptr, dgx, dh_seq, dh0,
    T, B, H,
    HP: tl.constexpr, BLOCK_B: tl.constexpr, RESET_AFTER: tl.constexpr,
    STORE_DH: tl.constexpr, REVERSE: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows, row_ok, lens = C.persistent_rows(lens_ptr, B, BLOCK_B)
    cols, col_ok, m2 = C.lanes(row_ok, H, HP)
    w_r, w_z, w_n = _weights_on_chip(w_hh, cols, col_ok, H, False)
    dh_next = C.load_f32(dh_n + rows[:, None] * H + cols[None, :], m2)
    for k in range(T):
        t, valid = C.step_time(T - 1 - k, lens, REVERSE)
        vm = valid[:, None]
        mv = m2 & vm
        tb = t * B + rows
        xt = tb[:, None] * (3 * H) + cols[None, :]
        gt = tb[:, None] * (4 * H) + cols[None, :]
        ht = tb[:, None] * H + cols[None, :]
        r = C.load_f32(gates + gt, mv)
        z = C.load_f32(gates + gt + H, mv)
        n = C.load_f32(gates + gt + 2 * H, mv)
        h_prev = C.load_f32(h_prev_seq + ht, mv)
        dh = C.load_f32(dy + ht, mv) + dh_next  # from the output and from step t+1
        dn_pre = dh * (1.0 - z) * (1.0 - n * n)  # h = (1 - z) ⊙ n + z ⊙ h_prev; tanh'
        dz_pre = dh * (h_prev - n) * z * (1.0 - z)  # σ' = σ(1 - σ)
        dn_pre = tl.where(vm, dn_pre, 0.0)
        dz_pre = tl.where(vm, dz_pre, 0.0)
        if RESET_AFTER:
            hn = C.load_f32(gates + gt + 3 * H, mv)
            dr_pre = tl.where(vm, dn_pre * hn * r * (1.0 - r), 0.0)  # n = tanh(.. + r ⊙ hn)
            dh_prev = (
                dh * z + C.mm(dr_pre, w_r, UPCAST, PRECISION)
                + C.mm(dz_pre, w_z, UPCAST, PRECISION) + C.mm(dn_pre * r, w_n, UPCAST, PRECISION)
            )
        else:
            drh = C.mm(dn_pre, w_n, UPCAST, PRECISION)  # n = tanh(.. + W_hn (r ⊙ h_prev))
            dr_pre = tl.where(vm, drh * h_prev * r * (1.0 - r), 0.0)
            dh_prev = (
                dh * z + C.mm(dr_pre, w_r, UPCAST, PRECISION)
                + C.mm(dz_pre, w_z, UPCAST, PRECISION) + drh * r
            )
        dh_next = tl.where(vm, dh_prev, dh_next)  # padding: the state passes through
        _store_dgx(dgx, xt, dr_pre, dz_pre, dn_pre, m2, H)
        if STORE_DH:
            C.store(dh_seq + ht, tl.where(vm, dh, 0.0), m2)
    C.store(dh0 + rows[:, None] * H + cols[None, :], dh_next, m2)


# ----------------------------------------------------------------- cooperative path
# (reset after: one product per step; the reset-before GRU takes the tiled path)


@triton.jit(do_not_specialize=["s_begin", "s_end"])
def _gru_fwd_coop(
    gx, hx, wp, b_hh, h_state, lens_ptr, probe, y, gates, sync, status,
    s_begin, s_end, B, H,
    BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr, KQ: tl.constexpr, HELD: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_PROBE: tl.constexpr, REVERSE: tl.constexpr, SYNC: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    """Steps s_begin .. s_end - 1 for this program's BH units of BB rows (see ``_coop``).
    hx (2, B, H): the exchange of h; h_state (B, H) fp32 carries h between launches."""
    rows, units, row_ok, m2, lens = X.tile(lens_ptr, B, H, BB, BH, BH)
    st = rows[:, None] * H + units[None, :]
    h = C.load_f32(h_state + st, m2)
    b_r, b_z, b_n = _recurrent_bias(b_hh, units, units < H, H, BH, HAS_BIAS)
    w = wp + tl.program_id(0) * H * (4 * BH)
    held = X.hold(w, H, 4 * BH, KQ, HELD)  # the slice in registers, or streamed
    limit = X.poll_limit()
    for s in range(s_begin, s_end):
        tb, vm, acc = X.forward_step(s, lens, hx, w, held, rows, row_ok, B, H, 4 * BH, BB,
                                     BK, KQ, HELD, REVERSE, UPCAST, PRECISION)
        mv = m2 & vm
        p_r, p_z, p_n, _ = X.split4(acc, BB, BH)
        xt = tb[:, None] * (3 * H) + units[None, :]
        gt = tb[:, None] * (4 * H) + units[None, :]
        ht = tb[:, None] * H + units[None, :]
        r = tl.sigmoid(C.load_f32(gx + xt, mv) + p_r + b_r[None, :])
        z = tl.sigmoid(C.load_f32(gx + xt + H, mv) + p_z + b_z[None, :])
        hn = p_n + b_n[None, :]
        n = C.tanh(C.load_f32(gx + xt + 2 * H, mv) + r * hn)
        h_t = n + z * (h - n)
        if HAS_PROBE:
            h_t += C.load_f32(probe + ht, mv)
        h = tl.where(vm, h_t, h)
        C.store(y + ht, tl.where(vm, h_t, 0.0), m2)
        _store_gates(gates, gt, r, z, n, hn, vm, m2, H)
        C.store(X.half(hx, s + 1, B, H) + st, h, m2)
        limit = X.end_step(sync, status, s + 1, limit, SYNC)
    C.store(h_state + st, h, m2)


@triton.jit(do_not_specialize=["s_begin", "s_end"])
def _gru_bwd_coop(
    dy, dpx, wp, dh_carry, gates, h_prev_seq, lens_ptr, dgx, dh_seq, sync, status,
    s_begin, s_end, T, B, H,
    BB: tl.constexpr, BH: tl.constexpr, BU: tl.constexpr, BK: tl.constexpr, KQ: tl.constexpr,
    HELD: tl.constexpr, STORE_DH: tl.constexpr, REVERSE: tl.constexpr, SYNC: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    """Iterations k = s_begin .. s_end - 1 of T + 1 (iteration T completes dh0).
    dpx (2, B, 3H): the exchange of [dr, dz, dn ⊙ r], whose product with W_hh is the part of
    dL/dh_{t-1} through the gates; dh_carry (B, H) fp32: the rest (dh ⊙ z, or the whole
    gradient across padding steps)."""
    rows, units, row_ok, m2, lens = X.tile(lens_ptr, B, H, BB, BU, BH)
    st = rows[:, None] * H + units[None, :]
    carry = C.load_f32(dh_carry + st, m2)
    w = wp + tl.program_id(0) * (3 * H) * BU
    held = X.hold(w, 3 * H, BU, KQ, HELD)  # the slice in registers, or streamed
    limit = X.poll_limit()
    for k in range(s_begin, s_end):
        tb, vm, rec = X.backward_step(k, T, lens, dpx, w, held, rows, row_ok, B, 3 * H, BU,
                                      BB, BK, KQ, HELD, REVERSE, UPCAST, PRECISION)
        mv = m2 & vm
        dh_next = carry + rec
        xt = tb[:, None] * (3 * H) + units[None, :]
        gt = tb[:, None] * (4 * H) + units[None, :]
        ht = tb[:, None] * H + units[None, :]
        r = C.load_f32(gates + gt, mv)
        z = C.load_f32(gates + gt + H, mv)
        n = C.load_f32(gates + gt + 2 * H, mv)
        hn = C.load_f32(gates + gt + 3 * H, mv)
        h_prev = C.load_f32(h_prev_seq + ht, mv)
        dh = C.load_f32(dy + ht, mv) + dh_next  # from the output and from step t+1
        dn_pre = tl.where(vm, dh * (1.0 - z) * (1.0 - n * n), 0.0)  # h = (1-z) n + z h_prev
        dz_pre = tl.where(vm, dh * (h_prev - n) * z * (1.0 - z), 0.0)
        dr_pre = tl.where(vm, dn_pre * hn * r * (1.0 - r), 0.0)  # n = tanh(.. + r ⊙ hn)
        carry = tl.where(vm, dh * z, dh_next)  # padding: the state passes through
        if k < T:
            _store_dgx(dgx, xt, dr_pre, dz_pre, dn_pre, m2, H)
            if STORE_DH:
                C.store(dh_seq + ht, tl.where(vm, dh, 0.0), m2)
        _store_dgx(X.half(dpx, k + 1, B, 3 * H), rows[:, None] * (3 * H) + units[None, :],
                   dr_pre, dz_pre, dn_pre * r, m2, H)
        limit = X.end_step(sync, status, k + 1, limit, SYNC)
    C.store(dh_carry + st, carry, m2)


# ----------------------------------------------------------------- tiled path


@triton.jit(do_not_specialize=["s"])
def _gru_rz_tile(
    s, gx, gh, h_state, lens_ptr, gates, rh_mm,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, REVERSE: tl.constexpr,
):
    """Reset before, first half of a step: r, z from gh = h·W_rzᵀ + b_rz, and r ⊙ h for
    the GEMM hn = (r ⊙ h)·W_hnᵀ + b_hn."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE)
    mv = m2 & vm
    tb = t * B + rows
    xt = tb[:, None] * (3 * H) + cols[None, :]
    gt = tb[:, None] * (4 * H) + cols[None, :]
    rt = rows[:, None] * (2 * H) + cols[None, :]
    r = tl.sigmoid(C.load_f32(gx + xt, mv) + C.load_f32(gh + rt, m2))
    z = tl.sigmoid(C.load_f32(gx + xt + H, mv) + C.load_f32(gh + rt + H, m2))
    C.store(gates + gt, tl.where(vm, r, 0.0), m2)
    C.store(gates + gt + H, tl.where(vm, z, 0.0), m2)
    st = rows[:, None] * H + cols[None, :]
    C.store(rh_mm + st, r * C.load_f32(h_state + st, m2), m2)


@triton.jit
def _tile_offsets(s, lens_ptr, B, H, TILE_B: tl.constexpr, TILE_H: tl.constexpr,
                  REVERSE: tl.constexpr):
    """A tiled step's tile (``C.tile_step``: rows, cols, m2, t, vm), mv = m2 & vm, and its
    offsets: xt of step t in gx (T, B, 3H), gt in the gates (T, B, 4H), ht in a (T, B, H)
    sequence, st in the state (B, H)."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE)
    tb = t * B + rows
    xt = tb[:, None] * (3 * H) + cols[None, :]
    gt = tb[:, None] * (4 * H) + cols[None, :]
    ht = tb[:, None] * H + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    return rows, cols, m2, t, vm, m2 & vm, xt, gt, ht, st


@triton.jit(do_not_specialize=["s"])
def _gru_fwd_tile(
    s, gx, gh, h_state, h_mm, lens_ptr, probe, y, gates,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, RESET_AFTER: tl.constexpr,
    HAS_PROBE: tl.constexpr, REVERSE: tl.constexpr,
):
    """A step after its GEMM: with the reset after, gh = h·W_hhᵀ + b_hh (B, 3H); before,
    gh = hn (B, H) and r, z were stored by ``_gru_rz_tile``."""
    rows, cols, m2, _t, vm, mv, xt, gt, ht, st = _tile_offsets(
        s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE
    )
    h = C.load_f32(h_state + st, m2)
    r, z, n, hn = _tile_gates(gx, gh, gates, rows, cols, xt, gt, st, mv, m2, H, RESET_AFTER)
    C.commit_step(n + z * (h - n), h, probe, y, h_state, h_mm, ht, st, m2, vm, HAS_PROBE)
    _store_gates(gates, gt, r, z, n, hn, vm, m2, H)


@triton.jit
def _tile_gates(gx, gh, gates, rows, cols, xt, gt, st, mv, m2, H, RESET_AFTER: tl.constexpr):
    """r, z, n, hn of a tiled step after its GEMM (see ``_gru_fwd_tile``): offsets xt of
    step t in gx, gt in gates, st of the (B, H) state; mv masks step t's valid rows."""
    if RESET_AFTER:
        rt = rows[:, None] * (3 * H) + cols[None, :]
        r = tl.sigmoid(C.load_f32(gx + xt, mv) + C.load_f32(gh + rt, m2))
        z = tl.sigmoid(C.load_f32(gx + xt + H, mv) + C.load_f32(gh + rt + H, m2))
        hn = C.load_f32(gh + rt + 2 * H, m2)
        n = C.tanh(C.load_f32(gx + xt + 2 * H, mv) + r * hn)
    else:
        r = C.load_f32(gates + gt, mv)
        z = C.load_f32(gates + gt + H, mv)
        hn = C.load_f32(gh + st, m2)
        n = C.tanh(C.load_f32(gx + xt + 2 * H, mv) + hn)
    return r, z, n, hn


@triton.jit
def _update_grads(dh, z, n, h_prev, vm):
    """The pre-activation gradients (dz, dn) of h = (1 - z) ⊙ n + z ⊙ h_prev given dh, its
    gradient (tanh' = 1 - n², σ' = z (1 - z)); 0 at padding (vm false)."""
    dn_pre = tl.where(vm, dh * (1.0 - z) * (1.0 - n * n), 0.0)
    dz_pre = tl.where(vm, dh * (h_prev - n) * z * (1.0 - z), 0.0)
    return dz_pre, dn_pre


@triton.jit
def _tiled_step_back(dy, rec, dh_dir, gates, h_prev_seq, dh_seq, gt, ht, st, m2, vm, H,
                     STORE_DH: tl.constexpr):
    """The part of a tiled step back that the reset's placement does not change: dh_t =
    dy_t + dh_dir + rec (rec = the last GEMM's dpre·W), recorded in dh_seq, and dh_t ⊙ z_t
    left in dh_dir (padding: dh passes through). Returns the saved r and the
    pre-activation gradients of z and n, 0 at padding. gt, ht, st: the step's offsets in
    the gates, in (T, B, H) and in the (B, H) state."""
    mv = m2 & vm
    r = C.load_f32(gates + gt, mv)
    z = C.load_f32(gates + gt + H, mv)
    n = C.load_f32(gates + gt + 2 * H, mv)
    dh_next = C.load_f32(dh_dir + st, m2) + C.load_f32(rec + st, m2)
    dh = C.load_f32(dy + ht, mv) + dh_next  # from the output and from step t+1
    dz_pre, dn_pre = _update_grads(dh, z, n, C.load_f32(h_prev_seq + ht, mv), vm)
    C.store(dh_dir + st, tl.where(vm, dh * z, dh_next), m2)  # padding: passes through
    if STORE_DH:
        C.store(dh_seq + ht, tl.where(vm, dh, 0.0), m2)
    return r, dz_pre, dn_pre


@triton.jit(do_not_specialize=["s"])
def _gru_bwd_tile(
    s, dy, rec, dh_dir, gates, h_prev_seq, lens_ptr, dgx, dpre_mm, dn_mm, dh_seq,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, RESET_AFTER: tl.constexpr,
    STORE_DH: tl.constexpr, REVERSE: tl.constexpr,
):
    """One step back from dh_t = dy_t + dh_dir + rec (rec = the last GEMM's dpre·W).

    Reset after: leaves dpre_mm = [dr, dz, dn ⊙ r] (B, 3H) for rec = dpre_mm·W_hh.
    Reset before: leaves dz in dpre_mm (B, 2H) and dn in dn_mm for drh = dn·W_hn;
    ``_gru_bwd_r_tile`` finishes the step.
    """
    rows, cols, m2, _t, vm, mv, xt, gt, ht, st = _tile_offsets(
        s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE
    )
    dh_next = C.load_f32(dh_dir + st, m2) + C.load_f32(rec + st, m2)
    dh = C.load_f32(dy + ht, mv) + dh_next
    z = _tile_gate_grads(dh, gates, h_prev_seq, dgx, dpre_mm, dn_mm, rows, cols, xt, gt, ht, st,
                        mv, vm, m2, H, RESET_AFTER)
    C.store(dh_dir + st, tl.where(vm, dh * z, dh_next), m2)  # padding: passes through
    if STORE_DH:
        C.store(dh_seq + ht, tl.where(vm, dh, 0.0), m2)


@triton.jit
def _tile_gate_grads(dh, gates, h_prev_seq, dgx, dpre_mm, dn_mm, rows, cols, xt, gt, ht, st,
                    mv, vm, m2, H, RESET_AFTER: tl.constexpr):
    """The gate gradients of a tiled step back from dh, the gradient of the new state
    h = (1 - z) ⊙ n + z ⊙ h_prev, stored as ``_gru_bwd_tile`` describes; returns z."""
    r = C.load_f32(gates + gt, mv)
    z = C.load_f32(gates + gt + H, mv)
    n = C.load_f32(gates + gt + 2 * H, mv)
    dz_pre, dn_pre = _update_grads(dh, z, n, C.load_f32(h_prev_seq + ht, mv), vm)
    if RESET_AFTER:
        hn = C.load_f32(gates + gt + 3 * H, mv)
        dr_pre = tl.where(vm, dn_pre * hn * r * (1.0 - r), 0.0)
        pt = rows[:, None] * (3 * H) + cols[None, :]
        _store_dgx(dgx, xt, dr_pre, dz_pre, dn_pre, m2, H)
        _store_dgx(dpre_mm, pt, dr_pre, dz_pre, dn_pre * r, m2, H)
    else:
        C.store(dgx + xt + H, dz_pre, m2)
        C.store(dgx + xt + 2 * H, dn_pre, m2)
        C.store(dpre_mm + rows[:, None] * (2 * H) + cols[None, :] + H, dz_pre, m2)
        C.store(dn_mm + st, dn_pre, m2)
    return z


@triton.jit(do_not_specialize=["s"])
def _gru_bwd_r_tile(
    s, drh, dh_dir, gates, h_prev_seq, lens_ptr, dgx, dpre_mm,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, REVERSE: tl.constexpr,
):
    """Reset before, second half of a step back, after the GEMM drh = dn·W_hn."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE)
    mv = m2 & vm
    tb = t * B + rows
    st = rows[:, None] * H + cols[None, :]
    r = C.load_f32(gates + tb[:, None] * (4 * H) + cols[None, :], mv)
    h_prev = C.load_f32(h_prev_seq + tb[:, None] * H + cols[None, :], mv)
    d_rh = C.load_f32(drh + st, m2)
    dr_pre = tl.where(vm, d_rh * h_prev * r * (1.0 - r), 0.0)
    C.store(dgx + tb[:, None] * (3 * H) + cols[None, :], dr_pre, m2)
    C.store(dpre_mm + rows[:, None] * (2 * H) + cols[None, :], dr_pre, m2)
    dh_d = C.load_f32(dh_dir + st, m2)
    C.store(dh_dir + st, tl.where(vm, dh_d + d_rh * r, dh_d), m2)  # through r ⊙ h_prev


# ----------------------------------------------------------------- host functions


def _coop_forward(gx, h0, w, b_hh, lens, h_probe, lay, *, reverse):
    """The cooperative kernel (reset after; layout ``lay``): all T steps in one launch,
    hidden units split across programs."""
    T, B, G = gx.shape
    H = G // 3
    y = gx.new_empty(T, B, H)
    gates = gx.new_empty(T, B, 4 * H)
    h_state = h0.to(torch.float32, copy=True).contiguous()  # fp32 state, never h0 itself
    hx = torch.empty(2, B, H, dtype=w.dtype, device=gx.device)  # exchange of h_{t-1}
    hx[0] = h0
    X.run(
        _gru_fwd_coop, lay, T,
        (gx, hx, X.pack_forward(w, 4, lay), b_hh if b_hh is not None else w, h_state, lens,
         h_probe if h_probe is not None else y, y, gates),
        k_size=H, n_size=4 * lay.BH, B=B, H=H, HAS_BIAS=b_hh is not None,
        HAS_PROBE=h_probe is not None, REVERSE=reverse, **C.dot_flags(gx),
    )
    return y, h_state.to(gx.dtype), gates


def _tiled_forward(gx, h0, w, b_hh, lens, h_probe, *, reverse, reset_after):
    """Per step, reset after: the GEMM gh = h·W_hhᵀ + b_hh, then one fused pointwise kernel.
    Reset before: GEMM (r, z), kernel, GEMM hn = (r ⊙ h)·W_hnᵀ + b_hn, kernel."""
    T, B, _ = gx.shape
    H = h0.shape[-1]
    y = gx.new_empty(T, B, H)
    gates = gx.new_empty(T, B, 4 * H)
    probe = h_probe if h_probe is not None else y
    h_state, h_mm = C.tiled_state(h0, w)
    step = dict(**C.tile_sizes(), HAS_PROBE=h_probe is not None, RESET_AFTER=reset_after,
                REVERSE=reverse)

    def finish(s, gh):
        _gru_fwd_tile[C.tile_grid(B, H)](s, gx, gh, h_state, h_mm, lens, probe, y, gates, B, H,
                                         **step)

    _tiled_steps(gx, h_mm, h_state, w, b_hh, lens, gates, finish, reverse=reverse,
                 reset_after=reset_after)
    return y, h_state.to(gx.dtype), gates


def _tiled_steps(gx, h_mm, h_r, w, b_hh, lens, gates, finish, *, reverse, reset_after):
    """The tiled forward's time loop. Reset after, per step: the GEMM gh = h_mm·W_hhᵀ + b_hh,
    then ``finish(s, gh)`` (the step's fused pointwise kernel). Reset before: the GEMM
    g_rz = h_mm·W_rzᵀ + b_rz, ``_gru_rz_tile`` (r, z and r ⊙ h_r), the GEMM
    hn = (r ⊙ h_r)·W_hnᵀ + b_hn, then ``finish(s, hn)``. h_mm is the GEMMs' input and h_r
    the state inside r ⊙ (·): h (in fp32 for h_r), or u = d ⊙ h for the masked GRU."""
    T, B, G = gx.shape
    H = G // 3
    mm_dtype = dict(dtype=w.dtype, device=gx.device)
    if reset_after:
        gh = torch.empty(B, G, **mm_dtype)
        for s in range(T):
            _addmm(b_hh, h_mm, w.t(), gh)
            finish(s, gh)
        return
    w_rz, w_n = w[: 2 * H], w[2 * H :]
    b_rz = b_hh[: 2 * H] if b_hh is not None else None
    b_n = b_hh[2 * H :] if b_hh is not None else None
    g_rz = torch.empty(B, 2 * H, **mm_dtype)
    rh_mm = torch.empty(B, H, **mm_dtype)
    hn = torch.empty(B, H, **mm_dtype)
    for s in range(T):
        _addmm(b_rz, h_mm, w_rz.t(), g_rz)
        _gru_rz_tile[C.tile_grid(B, H)](s, gx, g_rz, h_r, lens, gates, rh_mm, B, H,
                                        **C.tile_sizes(), REVERSE=reverse)
        _addmm(b_n, rh_mm, w_n.t(), hn)
        finish(s, hn)


def _addmm(bias: Tensor | None, a: Tensor, b: Tensor, out: Tensor) -> None:
    if bias is None:
        torch.mm(a, b, out=out)
    else:
        torch.addmm(bias, a, b, out=out)


def _coop_backward(dy, dh_n, w, gates, h_prev_seq, lens, lay, *, reverse, need_dh):
    """The cooperative kernel back (reset after; layout ``lay``): T steps and the final
    dh0 in one launch."""
    T, B, _ = gates.shape
    H = h_prev_seq.shape[-1]
    dgx = gates.new_empty(T, B, 3 * H)  # gradients of the input pre-activations
    dh_seq = dy.new_empty(T, B, H) if need_dh else dgx
    dpx = torch.zeros(2, B, 3 * H, dtype=w.dtype, device=gates.device)  # exchange
    carry = dh_n.to(torch.float32, copy=True).contiguous()
    X.run(
        _gru_bwd_coop, lay, T + 1,
        (dy, dpx, X.pack_backward(w, lay), carry, gates, h_prev_seq, lens, dgx, dh_seq),
        k_size=3 * H, n_size=lay.BU, T=T, B=B, H=H, BU=lay.BU, STORE_DH=need_dh, REVERSE=reverse,
        **C.dot_flags(gates),
    )
    return dgx, carry.to(dh_n.dtype), dh_seq


def _tiled_backward(dy, dh_n, w, gates, h_prev_seq, lens, *, reverse, reset_after, need_dh):
    """Per step back, reset after: one fused pointwise kernel, then the GEMM
    rec = [dr, dz, dn ⊙ r]·W_hh. Reset before: kernel, GEMM drh = dn·W_hn, kernel, GEMM
    rec = [dr, dz]·W_rz."""
    T, B, _ = gates.shape
    H = dh_n.shape[-1]
    dgx = gates.new_empty(T, B, 3 * H)
    dh_seq = dy.new_empty(T, B, H) if need_dh else dgx
    dh_dir = dh_n.to(torch.float32, copy=True).contiguous()  # dh_next minus the GEMM part
    flags = dict(**C.tile_sizes(), RESET_AFTER=reset_after, STORE_DH=need_dh, REVERSE=reverse)

    def start(s, rec, dpre_mm, dn_mm):
        _gru_bwd_tile[C.tile_grid(B, H)](s, dy, rec, dh_dir, gates, h_prev_seq, lens, dgx,
                                         dpre_mm, dn_mm, dh_seq, B, H, **flags)

    rec = _tiled_steps_back(start, dh_dir, h_prev_seq, w, gates, dgx, lens, reverse=reverse,
                            reset_after=reset_after)
    return dgx, (dh_dir + rec.float()).to(dh_n.dtype), dh_seq


def _tiled_steps_back(start, dh_r, h_r_seq, w, gates, dgx, lens, *, reverse, reset_after):
    """The tiled backward's time loop. Per step back ``start(s, rec, dpre_mm, dn_mm)`` (the
    fused pointwise kernel, given rec, the last GEMM's product), then, reset after, the
    GEMM rec = dpre_mm·W_hh; reset before, the GEMM drh = dn_mm·W_hn, ``_gru_bwd_r_tile``
    (dr from h_r_seq, the states inside r ⊙ (·); r ⊙ drh added to dh_r) and the GEMM
    rec = dpre_mm·W_rz. Returns the last rec."""
    T, B, _ = gates.shape
    H = w.shape[-1]
    mm_dtype = dict(dtype=w.dtype, device=gates.device)
    rec = torch.zeros(B, H, **mm_dtype)  # the last step's dpre·W
    dpre_mm = torch.empty(B, (3 if reset_after else 2) * H, **mm_dtype)
    dn_mm = torch.empty(B, H, **mm_dtype)
    drh = torch.empty(B, H, **mm_dtype)
    w_rz, w_n = w[: 2 * H], w[2 * H :]
    for s in range(T - 1, -1, -1):
        start(s, rec, dpre_mm, dn_mm)
        if reset_after:
            torch.mm(dpre_mm, w, out=rec)
        else:
            torch.mm(dn_mm, w_n, out=drh)
            _gru_bwd_r_tile[C.tile_grid(B, H)](s, drh, dh_r, gates, h_r_seq, lens, dgx, dpre_mm,
                                               B, H, **C.tile_sizes(), REVERSE=reverse)
            torch.mm(dpre_mm, w_rz, out=rec)
    return rec


class GpuGRU(GRUInferByForward):
    """GRU, Triton (:class:`rnnlab.backends.contract.GRUKernels`)."""

    def forward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None,
        reset_after: bool,
    ) -> GRUForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T, B, _ = x.shape
        H = h0.shape[-1]
        gx = project_inputs(x, w_ih, b_ih).contiguous()  # (T, B, 3H), padding rows unread
        lens = C.full_lengths(lengths, T, B, x.device)
        w = w_hh.contiguous()
        bias = b_hh.contiguous() if b_hh is not None else None
        probe = h_probe.contiguous() if h_probe is not None else None
        HP = C.pad(H)
        n_w = C.on_chip_bytes(3 * HP * HP, x)
        coop = X.plan(B, H, 4, x.device) if reset_after else None
        path = C.choose_path(n_w, coop)
        if path == "cooperative":
            try:
                return _coop_forward(gx, h0, w, bias, lens, probe, coop, reverse=reverse)
            except X.BarrierTimeout:
                path = "tiled"
        if path == "tiled":
            return C.run_tiled(
                "gru_forward", _tiled_forward, (gx, h0, w, bias, lens, probe),
                reverse=reverse, reset_after=reset_after,
            )
        y = x.new_empty(T, B, H)
        gates = x.new_empty(T, B, 4 * H)
        h_n = x.new_empty(B, H)
        _gru_fwd_persistent[C.launch_grid(B)](
            gx, h0.contiguous(), w, bias if bias is not None else w, lens,
            probe if probe is not None else y, y, h_n, gates, T, B, H,
            HP=HP, HAS_BIAS=bias is not None, RESET_AFTER=reset_after,
            HAS_PROBE=probe is not None, REVERSE=reverse, **C.persistent_settings(x, n_w),
        )
        return GRUForward(y, h_n, gates)

    def backward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, saved: GRUSaved, dy: Tensor,
        dh_n: Tensor, reset_after: bool, need_dh: bool, need_dx: bool,
    ) -> GRUGrads:
        (x, lengths, reverse), (w_ih, w_hh), (y, gates) = seq, (w.w_ih, w.w_hh), saved
        T, B, _ = x.shape
        H = h0.shape[-1]
        x = zero_padding(x, valid_mask(lengths, T))
        lens = C.full_lengths(lengths, T, B, x.device)
        w = w_hh.contiguous()
        dy = dy.contiguous()
        gates = gates.contiguous()
        h_prev_seq = previous_states(y, h0, lengths, reverse).contiguous()
        HP = C.pad(H)
        n_w = C.on_chip_bytes(3 * HP * HP, x)
        coop = X.plan(B, H, 4, x.device) if reset_after else None
        path = C.choose_path(n_w, coop)
        if path == "cooperative":
            try:
                dgx, dh0, dh_seq = _coop_backward(
                    dy, dh_n, w, gates, h_prev_seq, lens, coop, reverse=reverse, need_dh=need_dh
                )
            except X.BarrierTimeout:
                path = "tiled"
        if path == "persistent":
            dgx = x.new_empty(T, B, 3 * H)  # gradients of the input pre-activations
            dh_seq = torch.empty_like(y) if need_dh else dgx
            dh0 = torch.empty_like(h0)
            _gru_bwd_persistent[C.launch_grid(B)](
                dy, dh_n.contiguous(), w, gates, h_prev_seq, lens, dgx, dh_seq, dh0, T, B, H,
                HP=HP, RESET_AFTER=reset_after, STORE_DH=need_dh,
                REVERSE=reverse, **C.persistent_settings(x, n_w),
            )
        elif path == "tiled":
            dgx, dh0, dh_seq = C.run_tiled(
                "gru_backward", _tiled_backward, (dy, dh_n, w, gates, h_prev_seq, lens),
                reverse=reverse, reset_after=reset_after, need_dh=need_dh,
            )
        dx, dw_ih, dw_hh, db_ih, db_hh = gru_parameter_grads(
            dgx, x, w_ih, h_prev_seq, gates, reset_after, need_dx
        )
        dh_out = dh_seq if need_dh else empty_grad(y)
        return GRUGrads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dh_out)

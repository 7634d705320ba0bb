"""LSTM (with optional projection), Triton backend.

The equations and their symbols are those of :mod:`rnnlab.reference.lstm`; what the
forward saves, :class:`rnnlab.backends.contract.LSTMForward`.
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
    LSTMForward,
    LSTMGrads,
    LSTMInferByForward,
    LSTMSaved,
    LSTMState,
    LSTMWeights,
    Sequence,
)
from rnnlab.backends.gpu import _common as C
from rnnlab.backends.gpu import _coop as X


@triton.jit
def _cell(pre_i, pre_f, pre_g, pre_o, c_prev):
    """Activated gates, the new cell state and m = o ⊙ tanh(c), all (rows, H) fp32."""
    i = tl.sigmoid(pre_i)
    f = tl.sigmoid(pre_f)
    g = C.tanh(pre_g)
    o = tl.sigmoid(pre_o)
    c = f * c_prev + i * g
    return i, f, g, o, c, o * C.tanh(c)


@triton.jit
def _cell_grad(dm, dc_next, i, f, g, o, c, c_prev):
    """Gradients of the four pre-activations and of c_{t-1}, given dL/dm_t and dL/dc_t
    from step t+1."""
    tc = C.tanh(c)
    do = dm * tc  # m = o ⊙ tanh(c)
    dc = dc_next + dm * o * (1.0 - tc * tc)  # from m_t and from c_{t+1}
    return _gate_grads(dc, do, i, f, g, o, c_prev)


@triton.jit
def _gate_grads(dc, do, i, f, g, o, c_prev):
    """Gradients of the four pre-activations and of c_{t-1}, given the total dL/dc_t and
    dL/do_t (the reference's ``lstm_cell_backward``)."""
    di = dc * g  # c = f ⊙ c_prev + i ⊙ g
    dg = dc * i
    df = dc * c_prev
    return (
        di * i * (1.0 - i),  # σ' = σ(1 - σ)
        df * f * (1.0 - f),
        dg * (1.0 - g * g),  # tanh' = 1 - tanh²
        do * o * (1.0 - o),
        dc * f,
    )


@triton.jit
def _saved_cell_grad(dm, dc_next, gates, c_seq, c_prev_seq, gt, ct, mv, vm, H):
    """``_cell_grad`` from the gates and cell states saved for step t (offsets gt, ct; mask
    mv), the pre-activation gradients zero where the step is padding (vm)."""
    dpi, dpf, dpg, dpo, dc_prev = _cell_grad(
        dm, dc_next,
        C.load_f32(gates + gt, mv), C.load_f32(gates + gt + H, mv),
        C.load_f32(gates + gt + 2 * H, mv), C.load_f32(gates + gt + 3 * H, mv),
        C.load_f32(c_seq + ct, mv), C.load_f32(c_prev_seq + ct, mv),
    )
    return (tl.where(vm, dpi, 0.0), tl.where(vm, dpf, 0.0), tl.where(vm, dpg, 0.0),
            tl.where(vm, dpo, 0.0), dc_prev)


@triton.jit
def _store_gates(gates, gt, i, f, g, o, vm, m2, H):
    C.store(gates + gt, tl.where(vm, i, 0.0), m2)
    C.store(gates + gt + H, tl.where(vm, f, 0.0), m2)
    C.store(gates + gt + 2 * H, tl.where(vm, g, 0.0), m2)
    C.store(gates + gt + 3 * H, tl.where(vm, o, 0.0), m2)


# ----------------------------------------------------------------- persistent path


@triton.jit
def _weights_on_chip(w_hh, w_hr, hc, h_ok, pc, p_ok, H, P, TRANSPOSED: tl.constexpr,
                     HAS_PROJ: tl.constexpr):
    """W_hh per gate (i, f, g, o) and W_hr, on chip for the whole sequence. TRANSPOSED
    (the forward's h·Wᵀ): W_hhᵀ blocks (PP, HP), [k, j] = W_hh[gH + j, k], and W_hrᵀ
    (HP, PP), [j, p] = W_hr[p, j]; else (the backward's products with W) W_hh blocks
    (HP, PP), [j, k] = W_hh[gH + j, k], and W_hr (PP, HP). Without projection the last
    is a stand-in (the i block), never read."""
    w_i = C.gate_block(w_hh, 0, hc, h_ok, pc, p_ok, H, P, TRANSPOSED)
    w_f = C.gate_block(w_hh, 1, hc, h_ok, pc, p_ok, H, P, TRANSPOSED)
    w_g = C.gate_block(w_hh, 2, hc, h_ok, pc, p_ok, H, P, TRANSPOSED)
    w_o = C.gate_block(w_hh, 3, hc, h_ok, pc, p_ok, H, P, TRANSPOSED)
    if HAS_PROJ:
        w_r = C.gate_block(w_hr, 0, pc, p_ok, hc, h_ok, P, H, TRANSPOSED)
    else:
        w_r = w_i
    return w_i, w_f, w_g, w_o, w_r


@triton.jit
def _lstm_fwd_persistent(
    gx, h0, c0, w_hh, w_hr, lens_ptr, probe, y, h_n, c_n, gates, c_seq,
    T, B, H, P,
    HP: tl.constexpr, PP: tl.constexpr, BLOCK_B: tl.constexpr, HAS_PROJ: tl.constexpr,
    HAS_PROBE: tl.constexpr, REVERSE: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows, row_ok, lens = C.persistent_rows(lens_ptr, B, BLOCK_B)
    hc, h_ok, mh = C.lanes(row_ok, H, HP)  # hidden units
    pc, p_ok, mp = C.lanes(row_ok, P, PP)  # outputs (P = H without projection)
    w_i, w_f, w_g, w_o, w_r = _weights_on_chip(w_hh, w_hr, hc, h_ok, pc, p_ok, H, P, True,
                                               HAS_PROJ)
    h = C.load_f32(h0 + rows[:, None] * P + pc[None, :], mp)  # (BLOCK_B, PP) fp32
    c = C.load_f32(c0 + rows[:, None] * H + hc[None, :], mh)  # (BLOCK_B, HP) fp32
    for s in range(T):
        t, valid = C.step_time(s, lens, REVERSE)
        vm = valid[:, None]
        tb = t * B + rows
        gt = tb[:, None] * (4 * H) + hc[None, :]  # gate i of step t; f, g, o follow by H
        ct = tb[:, None] * H + hc[None, :]
        yt = tb[:, None] * P + pc[None, :]
        mv = mh & vm
        i, f, g, o, c_t, m_t = _cell(
            C.load_f32(gx + gt, mv) + C.mm(h, w_i, UPCAST, PRECISION),
            C.load_f32(gx + gt + H, mv) + C.mm(h, w_f, UPCAST, PRECISION),
            C.load_f32(gx + gt + 2 * H, mv) + C.mm(h, w_g, UPCAST, PRECISION),
            C.load_f32(gx + gt + 3 * H, mv) + C.mm(h, w_o, UPCAST, PRECISION),
            c,
        )
        if HAS_PROJ:
            h_t = C.mm(m_t, w_r, UPCAST, PRECISION)  # (BLOCK_B, PP)
        else:
            h_t = m_t
        if HAS_PROBE:
            h_t += C.load_f32(probe + yt, mp & vm)
        h = tl.where(vm, h_t, h)
        c = tl.where(vm, c_t, c)
        C.store(y + yt, tl.where(vm, h_t, 0.0), mp)
        C.store(c_seq + ct, tl.where(vm, c_t, 0.0), mh)
        _store_gates(gates, gt, i, f, g, o, vm, mh, H)
    C.store(h_n + rows[:, None] * P + pc[None, :], h, mp)
    C.store(c_n + rows[:, None] * H + hc[None, :], c, mh)


@triton.jit
def _lstm_bwd_persistent(
    dy, dh_n, dc_n, w_hh, w_hr, gates, c_seq, c_prev_seq, lens_ptr, dgates, dh_seq, dh0, dc0,
    T, B, H, P,
    HP: tl.constexpr, PP: tl.constexpr, BLOCK_B: tl.constexpr, HAS_PROJ: tl.constexpr,
    STORE_DH: tl.constexpr, REVERSE: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows, row_ok, lens = C.persistent_rows(lens_ptr, B, BLOCK_B)
    hc, h_ok, mh = C.lanes(row_ok, H, HP)  # hidden units
    pc, p_ok, mp = C.lanes(row_ok, P, PP)  # outputs (P = H without projection)
    w_i, w_f, w_g, w_o, w_r = _weights_on_chip(w_hh, w_hr, hc, h_ok, pc, p_ok, H, P, False,
                                               HAS_PROJ)
    dh_next = C.load_f32(dh_n + rows[:, None] * P + pc[None, :], mp)
    dc_next = C.load_f32(dc_n + rows[:, None] * H + hc[None, :], mh)
    for k in range(T):
        t, valid = C.step_time(T - 1 - k, lens, REVERSE)
        vm = valid[:, None]
        tb = t * B + rows
        gt = tb[:, None] * (4 * H) + hc[None, :]
        ct = tb[:, None] * H + hc[None, :]
        yt = tb[:, None] * P + pc[None, :]
        mv = mh & vm
        dh = C.load_f32(dy + yt, mp & vm) + dh_next  # from the output and from step t+1
        if HAS_PROJ:
            dm = C.mm(dh, w_r, UPCAST, PRECISION)  # through h = W_hr m
        else:
            dm = dh
        dpi, dpf, dpg, dpo, dc_prev = _saved_cell_grad(
            dm, dc_next, gates, c_seq, c_prev_seq, gt, ct, mv, vm, H
        )
        dh_prev = (  # through W_hh h_{t-1}
            C.mm(dpi, w_i, UPCAST, PRECISION) + C.mm(dpf, w_f, UPCAST, PRECISION)
            + C.mm(dpg, w_g, UPCAST, PRECISION) + C.mm(dpo, w_o, UPCAST, PRECISION)
        )
        dh_next = tl.where(vm, dh_prev, dh_next)  # padding: the state passes through
        dc_next = tl.where(vm, dc_prev, dc_next)
        _store_gates(dgates, gt, dpi, dpf, dpg, dpo, vm, mh, H)
        if STORE_DH:
            C.store(dh_seq + yt, tl.where(vm, dh, 0.0), mp)
    C.store(dh0 + rows[:, None] * P + pc[None, :], dh_next, mp)
    C.store(dc0 + rows[:, None] * H + hc[None, :], dc_next, mh)


# ----------------------------------------------------------------- cooperative path


@triton.jit(do_not_specialize=["s_begin", "s_end"])
def _lstm_fwd_coop(
    gx, hx, wp, h_state, c_state, lens_ptr, probe, y, gates, c_seq, sync, status,
    s_begin, s_end, B, H,
    BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr, KQ: tl.constexpr, HELD: tl.constexpr,
    HAS_PROBE: tl.constexpr, REVERSE: tl.constexpr, SYNC: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Steps s_begin .. s_end - 1 for this program's BH units of BB rows (see ``_coop``).
    hx (2, B, H): the exchange of h; h_state, c_state (B, H) fp32 carry the state between
    launches (one launch with SYNC)."""
    rows, units, row_ok, m2, lens = X.tile(lens_ptr, B, H, BB, BH, BH)
    st = rows[:, None] * H + units[None, :]
    h = C.load_f32(h_state + st, m2)
    c = C.load_f32(c_state + st, m2)
    w = wp + tl.program_id(0) * H * (4 * BH)
    held = X.hold(w, H, 4 * BH, KQ, HELD)  # the slice in registers, or streamed
    limit = X.poll_limit()
    for s in range(s_begin, s_end):
        tb, vm, acc = X.forward_step(s, lens, hx, w, held, rows, row_ok, B, H, 4 * BH, BB,
                                     BK, KQ, HELD, REVERSE, UPCAST, PRECISION)
        mv = m2 & vm
        p_i, p_f, p_g, p_o = X.split4(acc, BB, BH)
        gt = tb[:, None] * (4 * H) + units[None, :]
        ct = tb[:, None] * H + units[None, :]
        i, f, g, o, c_t, h_t = _cell(
            C.load_f32(gx + gt, mv) + p_i, C.load_f32(gx + gt + H, mv) + p_f,
            C.load_f32(gx + gt + 2 * H, mv) + p_g, C.load_f32(gx + gt + 3 * H, mv) + p_o, c,
        )
        if HAS_PROBE:
            h_t += C.load_f32(probe + ct, mv)
        h = tl.where(vm, h_t, h)
        c = tl.where(vm, c_t, c)
        C.store(y + ct, tl.where(vm, h_t, 0.0), m2)
        C.store(c_seq + ct, tl.where(vm, c_t, 0.0), m2)
        _store_gates(gates, gt, i, f, g, o, vm, m2, H)
        C.store(X.half(hx, s + 1, B, H) + st, h, m2)
        limit = X.end_step(sync, status, s + 1, limit, SYNC)
    C.store(h_state + st, h, m2)
    C.store(c_state + st, c, m2)


@triton.jit(do_not_specialize=["s_begin", "s_end"])
def _lstm_bwd_coop(
    dy, dpx, wp, dh_carry, dc_state, gates, c_seq, c_prev_seq, lens_ptr, dgates, dh_seq,
    sync, status,
    s_begin, s_end, T, B, H,
    BB: tl.constexpr, BH: tl.constexpr, BU: tl.constexpr, BK: tl.constexpr, KQ: tl.constexpr,
    HELD: tl.constexpr, STORE_DH: tl.constexpr, REVERSE: tl.constexpr, SYNC: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    """Iterations k = s_begin .. s_end - 1 of T + 1: iteration k < T is step T - 1 - k back;
    iteration T only completes dh0 = carry + dpre_0·W_hh. dpx (2, B, 4H): the exchange of
    the pre-activation gradients; dh_carry, dc_state (B, H) fp32: the part of dL/dh that
    does not go through the exchange (padding steps pass it on), and dL/dc."""
    rows, units, row_ok, m2, lens = X.tile(lens_ptr, B, H, BB, BU, BH)
    st = rows[:, None] * H + units[None, :]
    carry = C.load_f32(dh_carry + st, m2)
    dc_next = C.load_f32(dc_state + st, m2)
    w = wp + tl.program_id(0) * (4 * H) * BU
    held = X.hold(w, 4 * H, BU, KQ, HELD)  # the slice in registers, or streamed
    limit = X.poll_limit()
    for k in range(s_begin, s_end):
        tb, vm, rec = X.backward_step(k, T, lens, dpx, w, held, rows, row_ok, B, 4 * H, BU,
                                      BB, BK, KQ, HELD, REVERSE, UPCAST, PRECISION)
        mv = m2 & vm
        dh_next = carry + rec
        gt = tb[:, None] * (4 * H) + units[None, :]
        ct = tb[:, None] * H + units[None, :]
        dh = C.load_f32(dy + ct, mv) + dh_next  # from the output and from step t+1
        dpi, dpf, dpg, dpo, dc_prev = _saved_cell_grad(
            dh, dc_next, gates, c_seq, c_prev_seq, gt, ct, mv, vm, H
        )
        carry = tl.where(vm, 0.0, dh_next)  # padding: the state passes through
        dc_next = tl.where(vm, dc_prev, dc_next)
        if k < T:
            _store_gates(dgates, gt, dpi, dpf, dpg, dpo, vm, m2, H)
            if STORE_DH:
                C.store(dh_seq + ct, tl.where(vm, dh, 0.0), m2)
        _store_gates(X.half(dpx, k + 1, B, 4 * H), rows[:, None] * (4 * H) + units[None, :],
                     dpi, dpf, dpg, dpo, vm, m2, H)
        limit = X.end_step(sync, status, k + 1, limit, SYNC)
    C.store(dh_carry + st, carry, m2)
    C.store(dc_state + st, dc_next, m2)


# ----------------------------------------------------------------- tiled path


@triton.jit
def _tile_offsets(s, lens_ptr, B, H, TILE_B: tl.constexpr, TILE_H: tl.constexpr,
                  REVERSE: tl.constexpr):
    """A tiled step's tile (``C.tile_step``: rows, cols, m2, t, vm), mv = m2 & vm, and its
    offsets: gt of step t in the gates (T, B, 4H), ct in a (T, B, H) sequence, st in the
    state (B, H), rt in the step's GEMM (B, 4H)."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE)
    tb = t * B + rows
    gt = tb[:, None] * (4 * H) + cols[None, :]
    ct = tb[:, None] * H + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    rt = rows[:, None] * (4 * H) + cols[None, :]
    return rows, cols, m2, t, vm, m2 & vm, gt, ct, st, rt


@triton.jit
def _tile_cell(gx, gh, gt, rt, c_prev, mv, m2, H):
    """``_cell`` of a tiled step: pre-activations from the input projection gx (offsets gt
    of step t, mask mv) and the step's GEMM gh = h·W_hhᵀ (offsets rt, mask m2)."""
    return _cell(
        C.load_f32(gx + gt, mv) + C.load_f32(gh + rt, m2),
        C.load_f32(gx + gt + H, mv) + C.load_f32(gh + rt + H, m2),
        C.load_f32(gx + gt + 2 * H, mv) + C.load_f32(gh + rt + 2 * H, m2),
        C.load_f32(gx + gt + 3 * H, mv) + C.load_f32(gh + rt + 3 * H, m2),
        c_prev,
    )


@triton.jit(do_not_specialize=["s"])
def _lstm_fwd_tile(
    s, gx, gh, c_state, h_state, h_mm, m_mm, lens_ptr, probe, y, gates, c_seq,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, HAS_PROJ: tl.constexpr,
    HAS_PROBE: tl.constexpr, REVERSE: tl.constexpr,
):
    """One step after the GEMM gh = h·W_hhᵀ (B, 4H). With a projection it leaves m_t in
    m_mm for the GEMM h_t = m_t·W_hrᵀ and ``_commit_tile`` finishes the step."""
    _rows, _cols, m2, _t, vm, mv, gt, ct, st, rt = _tile_offsets(
        s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE
    )
    c = C.load_f32(c_state + st, m2)
    i, f, g, o, c_t, m_t = _tile_cell(gx, gh, gt, rt, c, mv, m2, H)
    C.store(c_state + st, tl.where(vm, c_t, c), m2)
    C.store(c_seq + ct, tl.where(vm, c_t, 0.0), m2)
    _store_gates(gates, gt, i, f, g, o, vm, m2, H)
    if HAS_PROJ:
        C.store(m_mm + st, m_t, m2)
    else:  # h_t = m_t
        h = C.load_f32(h_state + st, m2)
        C.commit_step(m_t, h, probe, y, h_state, h_mm, ct, st, m2, vm, HAS_PROBE)


@triton.jit(do_not_specialize=["s"])
def _commit_tile(
    s, hp, h_state, h_mm, lens_ptr, probe, y,
    B, P,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, HAS_PROBE: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """Projection, end of a step: h_t = hp (+ probe), masked into the state and y."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, P, TILE_B, TILE_H, REVERSE)
    yt = (t * B + rows)[:, None] * P + cols[None, :]
    st = rows[:, None] * P + cols[None, :]
    h = C.load_f32(h_state + st, m2)
    C.commit_step(C.load_f32(hp + st, m2), h, probe, y, h_state, h_mm, yt, st, m2, vm, HAS_PROBE)


@triton.jit(do_not_specialize=["s"])
def _dh_tile(
    s, dy, rec, dh_dir, lens_ptr, dh_mm, dh_seq,
    B, P,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, REVERSE: tl.constexpr,
):
    """Projection, start of a step back: dh_t = dy_t + dh_next, for the GEMM dm = dh·W_hr."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, P, TILE_B, TILE_H, REVERSE)
    yt = (t * B + rows)[:, None] * P + cols[None, :]
    st = rows[:, None] * P + cols[None, :]
    dh_next = C.load_f32(dh_dir + st, m2) + C.load_f32(rec + st, m2)
    dh = C.load_f32(dy + yt, m2 & vm) + dh_next
    C.store(dh_mm + st, tl.where(vm, dh, 0.0), m2)
    C.store(dh_seq + yt, tl.where(vm, dh, 0.0), m2)
    C.store(dh_dir + st, tl.where(vm, 0.0, dh_next), m2)  # padding: the state passes through


@triton.jit(do_not_specialize=["s"])
def _lstm_bwd_tile(
    s, dy, rec, dh_dir, dm_buf, dc_state, gates, c_seq, c_prev_seq, lens_ptr, dgates, dpre_mm,
    dh_seq,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, HAS_PROJ: tl.constexpr,
    STORE_DH: tl.constexpr, REVERSE: tl.constexpr,
):
    """One step back. Without a projection dh_t = dy_t + dh_dir + rec (rec = dpre_{t+1}·W_hh
    from the last GEMM); with one, dm_t was computed by ``_dh_tile`` and a GEMM."""
    _rows, _cols, m2, _t, vm, mv, gt, ct, st, rt = _tile_offsets(
        s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE
    )
    if HAS_PROJ:
        dm = C.load_f32(dm_buf + st, m2)
    else:
        dh_next = C.load_f32(dh_dir + st, m2) + C.load_f32(rec + st, m2)
        dm = C.load_f32(dy + ct, mv) + dh_next
        C.store(dh_dir + st, tl.where(vm, 0.0, dh_next), m2)  # padding: passes through
        if STORE_DH:
            C.store(dh_seq + ct, tl.where(vm, dm, 0.0), m2)
    dc_next = C.load_f32(dc_state + st, m2)
    dpi, dpf, dpg, dpo, dc_prev = _saved_cell_grad(
        dm, dc_next, gates, c_seq, c_prev_seq, gt, ct, mv, vm, H
    )
    C.store(dc_state + st, tl.where(vm, dc_prev, dc_next), m2)
    _store_gates(dgates, gt, dpi, dpf, dpg, dpo, vm, m2, H)
    _store_gates(dpre_mm, rt, dpi, dpf, dpg, dpo, vm, m2, H)  # for the GEMM rec = dpre·W_hh


# ----------------------------------------------------------------- host functions


def _on_chip_bytes(H: int, P: int, proj: bool, x: Tensor) -> int | None:
    """Bytes of padded weights the persistent kernel would hold in registers, or None
    (see ``_common.on_chip_bytes``; also fp32 with a projection, whose 3xTF32 products
    of three shapes spill on sm_90 at any useful size: tiled path)."""
    if proj and x.dtype == torch.float32 and not C.interpreting(x.device):
        return None
    HP, PP = C.pad(H), C.pad(P)
    return C.on_chip_bytes(4 * HP * PP + (HP * PP if proj else 0), x)


def _coop_forward(gx, h0, c0, w, lens, h_probe, lay, *, reverse):
    """The cooperative kernel (layout ``lay``): all T steps in one launch, hidden units
    split across programs (no projection)."""
    T, B, G = gx.shape
    H = G // 4
    y = gx.new_empty(T, B, H)
    gates = torch.empty_like(gx)
    c_seq = gx.new_empty(T, B, H)
    h_state = h0.to(torch.float32, copy=True).contiguous()  # fp32 states, never h0/c0
    c_state = c0.to(torch.float32, copy=True).contiguous()
    hx = torch.empty(2, B, H, dtype=w.dtype, device=gx.device)  # exchange of h_{t-1}
    hx[0] = h0
    X.run(
        _lstm_fwd_coop, lay, T,
        (gx, hx, X.pack_forward(w, 4, lay), h_state, c_state, lens,
         h_probe if h_probe is not None else y, y, gates, c_seq),
        k_size=H, n_size=4 * lay.BH, B=B, H=H, HAS_PROBE=h_probe is not None,
        REVERSE=reverse, **C.dot_flags(gx),
    )
    return y, h_state.to(gx.dtype), c_state.to(gx.dtype), gates, c_seq


def _tiled_forward(gx, h0, c0, w, w_r, lens, h_probe, *, reverse):
    """Per step: the GEMM gh = h·W_hhᵀ, one fused pointwise kernel and, with a projection,
    the GEMM h = m·W_hrᵀ and a small commit kernel."""
    T, B, _ = gx.shape
    H, P = c0.shape[-1], h0.shape[-1]
    y = gx.new_empty(T, B, P)
    gates = torch.empty_like(gx)
    c_seq = gx.new_empty(T, B, H)
    probe = h_probe if h_probe is not None else y
    h_state, h_mm = C.tiled_state(h0, w)
    c_state = c0.to(torch.float32, copy=True).contiguous()  # fp32, never c0 itself
    flags = dict(**C.tile_sizes(), HAS_PROBE=h_probe is not None, REVERSE=reverse)

    def cell(s, gh, m_mm):
        _lstm_fwd_tile[C.tile_grid(B, H)](
            s, gx, gh, c_state, h_state, h_mm, m_mm, lens, probe, y, gates, c_seq, B, H,
            HAS_PROJ=w_r is not None, **flags,
        )

    def commit(s, hp):
        _commit_tile[C.tile_grid(B, P)](s, hp, h_state, h_mm, lens, probe, y, B, P, **flags)

    _tiled_steps(T, h_mm, w, w_r, H, cell, commit)
    return y, h_state.to(gx.dtype), c_state.to(gx.dtype), gates, c_seq


def _tiled_steps(T, h_mm, w, w_r, H, cell, commit):
    """The tiled forward's time loop: per step the GEMM gh = h_mm·W_hhᵀ, then
    ``cell(s, gh, m_mm)`` (the fused pointwise kernel; with a projection it leaves m_t in
    m_mm), and with a projection the GEMM hp = m_t·W_hrᵀ and ``commit(s, hp)``. h_mm is
    the GEMM's input: h, or u = d ⊙ h for the masked LSTM."""
    B, P = h_mm.shape
    mm_dtype = dict(dtype=w.dtype, device=h_mm.device)
    gh = torch.empty(B, w.shape[0], **mm_dtype)
    m_mm = torch.empty(B, H, **mm_dtype) if w_r is not None else gh
    hp = torch.empty(B, P, **mm_dtype) if w_r is not None else gh
    for s in range(T):
        torch.mm(h_mm, w.t(), out=gh)
        cell(s, gh, m_mm)
        if w_r is not None:
            torch.mm(m_mm, w_r.t(), out=hp)
            commit(s, hp)


def _coop_backward(dy, dh_n, dc_n, w, gates, c_seq, c_prev_seq, lens, lay, *, reverse,
                   store_dh):
    """The cooperative kernel back (layout ``lay``): T steps and the final dh0 in one
    launch."""
    T, B, G = gates.shape
    H = G // 4
    dgates = torch.empty_like(gates)
    dh_seq = dy.new_empty(T, B, H) if store_dh else dgates
    dpx = torch.zeros(2, B, G, dtype=w.dtype, device=gates.device)  # exchange of dpre
    carry = dh_n.to(torch.float32, copy=True).contiguous()
    dc_state = dc_n.to(torch.float32, copy=True).contiguous()
    X.run(
        _lstm_bwd_coop, lay, T + 1,
        (dy, dpx, X.pack_backward(w, lay), carry, dc_state, gates, c_seq, c_prev_seq, lens,
         dgates, dh_seq),
        k_size=G, n_size=lay.BU, T=T, B=B, H=H, BU=lay.BU, STORE_DH=store_dh, REVERSE=reverse,
        **C.dot_flags(gates),
    )
    return dgates, carry.to(dh_n.dtype), dc_state.to(dc_n.dtype), dh_seq


def _tiled_backward(dy, dh_n, dc_n, w, w_r, gates, c_seq, c_prev_seq, lens, *, reverse,
                    store_dh):
    """Per step back: (with a projection: a small kernel for dh and the GEMM dm = dh·W_hr),
    one fused pointwise kernel, then the GEMM rec = dpre·W_hh."""
    T, B, _ = gates.shape
    H, P = c_seq.shape[-1], dh_n.shape[-1]
    dgates = torch.empty_like(gates)
    dh_seq = dy.new_empty(T, B, P) if store_dh else dgates
    dh_dir = dh_n.to(torch.float32, copy=True).contiguous()  # dh_next minus the GEMM part
    dc_state = dc_n.to(torch.float32, copy=True).contiguous()
    flags = dict(**C.tile_sizes(), REVERSE=reverse)

    def start(s, rec, dh_mm):
        _dh_tile[C.tile_grid(B, P)](s, dy, rec, dh_dir, lens, dh_mm, dh_seq, B, P, **flags)

    def cell(s, rec, dm, dpre_mm):
        _lstm_bwd_tile[C.tile_grid(B, H)](
            s, dy, rec, dh_dir, dm, dc_state, gates, c_seq, c_prev_seq, lens, dgates,
            dpre_mm, dh_seq, B, H, HAS_PROJ=w_r is not None, STORE_DH=store_dh, **flags,
        )

    rec = _tiled_steps_back(T, B, H, P, w, w_r, start, cell)
    dh0 = (dh_dir + rec.float()).to(dh_n.dtype)
    return dgates, dh0, dc_state.to(dc_n.dtype), dh_seq


def _tiled_steps_back(T, B, H, P, w, w_r, start, cell):
    """The tiled backward's time loop: per step back, with a projection ``start(s, rec,
    dh_mm)`` (the gradient of h_t into dh_mm, given rec, the last GEMM's product) and the
    GEMM dm = dh_mm·W_hr; ``cell(s, rec, dm, dpre_mm)`` (the fused pointwise kernel, the
    pre-activation gradients into dpre_mm); the GEMM rec = dpre_mm·W_hh. Returns the last
    rec."""
    mm_dtype = dict(dtype=w.dtype, device=w.device)
    rec = torch.zeros(B, P, **mm_dtype)  # dpre_{t+1}·W_hh
    dpre_mm = torch.empty(B, w.shape[0], **mm_dtype)
    dh_mm = torch.empty(B, P, **mm_dtype) if w_r is not None else rec
    dm = torch.empty(B, H, **mm_dtype) if w_r is not None else rec
    for s in range(T - 1, -1, -1):
        if w_r is not None:
            start(s, rec, dh_mm)
            torch.mm(dh_mm, w_r, out=dm)  # through h = W_hr m
        cell(s, rec, dm, dpre_mm)
        torch.mm(dpre_mm, w, out=rec)
    return rec


class GpuLSTM(LSTMInferByForward):
    """LSTM, Triton (:class:`rnnlab.backends.contract.LSTMKernels`)."""

    def forward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, h_probe: Tensor | None
    ) -> LSTMForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh, w_hr), (h0, c0) = seq, w, state
        T, B, _ = x.shape
        H, P = c0.shape[-1], h0.shape[-1]
        gx = project_inputs(x, w_ih, sum_bias(b_ih, b_hh)).contiguous()  # padding rows unread
        lens = C.full_lengths(lengths, T, B, x.device)
        w = w_hh.contiguous()
        w_r = w_hr.contiguous() if w_hr is not None else None
        probe = h_probe.contiguous() if h_probe is not None else None
        n_w = _on_chip_bytes(H, P, w_r is not None, x)
        coop = X.plan(B, H, 4, x.device) if w_r is None else None
        path = C.choose_path(n_w, coop)
        if path == "cooperative":
            try:
                return _coop_forward(gx, h0, c0, w, lens, probe, coop, reverse=reverse)
            except X.BarrierTimeout:
                path = "tiled"
        if path == "tiled":
            return C.run_tiled(
                "lstm_forward", _tiled_forward, (gx, h0, c0, w, w_r, lens, probe), reverse=reverse
            )
        y = x.new_empty(T, B, P)
        gates = torch.empty_like(gx)
        c_seq = x.new_empty(T, B, H)
        h_n, c_n = x.new_empty(B, P), x.new_empty(B, H)
        _lstm_fwd_persistent[C.launch_grid(B)](
            gx, h0.contiguous(), c0.contiguous(), w, w_r if w_r is not None else w, lens,
            probe if probe is not None else y, y, h_n, c_n, gates, c_seq, T, B, H, P,
            HP=C.pad(H), PP=C.pad(P), HAS_PROJ=w_r is not None,
            HAS_PROBE=probe is not None, REVERSE=reverse, **C.persistent_settings(x, n_w),
        )
        return LSTMForward(y, h_n, c_n, gates, c_seq)

    def backward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, saved: LSTMSaved, dy: Tensor,
        d_state: LSTMState, need_dh: bool, need_dx: bool,
    ) -> LSTMGrads:
        (x, lengths, reverse), (h0, c0), (y, gates, c_seq) = seq, state, saved
        (w_ih, w_hh, w_hr), (dh_n, dc_n) = (w.w_ih, w.w_hh, w.w_hr), d_state
        T, B, _ = x.shape
        H, P = c0.shape[-1], h0.shape[-1]
        x = zero_padding(x, valid_mask(lengths, T))
        lens = C.full_lengths(lengths, T, B, x.device)
        proj = w_hr is not None
        w = w_hh.contiguous()
        w_r = w_hr.contiguous() if proj else None
        dy = dy.contiguous()
        gates = gates.contiguous()
        c_seq = c_seq.contiguous()
        c_prev_seq = previous_states(c_seq, c0, lengths, reverse).contiguous()
        store_dh = need_dh or proj
        n_w = _on_chip_bytes(H, P, proj, x)
        coop = X.plan(B, H, 4, x.device) if not proj else None
        path = C.choose_path(n_w, coop)
        if path == "cooperative":
            try:
                dgates, dh0, dc0, dh_seq = _coop_backward(
                    dy, dh_n, dc_n, w, gates, c_seq, c_prev_seq, lens, coop, reverse=reverse,
                    store_dh=store_dh,
                )
            except X.BarrierTimeout:
                path = "tiled"
        if path == "persistent":
            dgates = torch.empty_like(gates)  # gradients of the pre-activations (T, B, 4H)
            dh_seq = torch.empty_like(y) if store_dh else dgates
            dh0, dc0 = torch.empty_like(h0), torch.empty_like(c0)
            _lstm_bwd_persistent[C.launch_grid(B)](
                dy, dh_n.contiguous(), dc_n.contiguous(), w, w_r if proj else w, gates, c_seq,
                c_prev_seq, lens, dgates, dh_seq, dh0, dc0, T, B, H, P,
                HP=C.pad(H), PP=C.pad(P), HAS_PROJ=proj, STORE_DH=store_dh,
                REVERSE=reverse, **C.persistent_settings(x, n_w),
            )
        elif path == "tiled":
            dgates, dh0, dc0, dh_seq = C.run_tiled(
                "lstm_backward", _tiled_backward,
                (dy, dh_n, dc_n, w, w_r, gates, c_seq, c_prev_seq, lens),
                reverse=reverse, store_dh=store_dh,
            )
        dx, dw_ih, dw_hh, db = parameter_grads(dgates, x, w_ih, y, h0, lengths, reverse, need_dx)
        dw_hr = projection_grad(dh_seq, gates, c_seq) if proj else empty_grad(y)
        dh_out = dh_seq if need_dh else empty_grad(y)
        return LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, dh_out)

"""Elman RNN, Triton backend.

The equations and their symbols are those of :mod:`rnnlab.reference.rnn`; what the
forward returns and backward reads, :class:`rnnlab.backends.contract.RNNForward` and
``RNNSaved``. The input projection (all steps) and the weight gradients are GEMMs outside
the recurrence; the kernels run the serial part.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from rnnlab.backends._host import (
    empty_grad,
    parameter_grads,
    project_inputs,
    sum_bias,
    valid_mask,
    zero_padding,
)
from rnnlab.backends.contract import (
    RNNForward,
    RNNGrads,
    RNNInferByForward,
    RNNSaved,
    RNNWeights,
    Sequence,
    activation_of,
)
from rnnlab.backends.gpu import _common as C
from rnnlab.backends.gpu import _coop as X


@triton.jit
def _activate(a, RELU: tl.constexpr):
    if RELU:
        h = tl.maximum(a, 0.0)
    else:
        h = C.tanh(a)
    return h


@triton.jit
def _activate_grad(f, RELU: tl.constexpr):
    """act'(a) from the activation's value f = act(a): relu'(a) = [f > 0],
    tanh'(a) = 1 - f²."""
    if RELU:
        d = tl.where(f > 0, 1.0, 0.0)
    else:
        d = 1.0 - f * f
    return d


# ----------------------------------------------------------------- persistent path


@triton.jit
def _rnn_fwd_persistent(
    ax, h0, w_hh, lens_ptr, probe, y, h_n, a_seq,
    T, B, H,
    HP: tl.constexpr, BLOCK_B: tl.constexpr, RELU: tl.constexpr, HAS_PROBE: tl.constexpr,
    REVERSE: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    rows, row_ok, lens = C.persistent_rows(lens_ptr, B, BLOCK_B)
    cols, col_ok, m2 = C.lanes(row_ok, H, HP)
    # W_hhᵀ (HP, HP), on chip for the whole sequence: element [k, j] = W_hh[j, k]
    w_t = C.gate_block(w_hh, 0, cols, col_ok, cols, col_ok, H, H, True)
    h = C.load_f32(h0 + rows[:, None] * H + cols[None, :], m2)  # (BLOCK_B, HP) fp32 state
    for s in range(T):
        t, valid = C.step_time(s, lens, REVERSE)
        vm = valid[:, None]
        at = (t * B + rows)[:, None] * H + cols[None, :]  # (BLOCK_B, HP) offsets at step t
        a = C.load_f32(ax + at, m2 & vm) + C.mm(h, w_t, UPCAST, PRECISION)
        h_t = _activate(a, RELU)
        if HAS_PROBE:
            h_t += C.load_f32(probe + at, m2 & vm)
        h = tl.where(vm, h_t, h)
        C.store(y + at, tl.where(vm, h_t, 0.0), m2)
        C.store(a_seq + at, tl.where(vm, a, 0.0), m2)
    C.store(h_n + rows[:, None] * H + cols[None, :], h, m2)


@triton.jit
def _rnn_bwd_persistent(
    dy, dh_n, w_hh, f_seq, lens_ptr, da_seq, dh_seq, dh0,
    T, B, H,
    HP: tl.constexpr, BLOCK_B: tl.constexpr, RELU: tl.constexpr, STORE_DH: tl.constexpr,
    REVERSE: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    rows, row_ok, lens = C.persistent_rows(lens_ptr, B, BLOCK_B)
    cols, col_ok, m2 = C.lanes(row_ok, H, HP)
    # W_hh (HP, HP), on chip: element [j, k] = W_hh[j, k]
    w = C.gate_block(w_hh, 0, cols, col_ok, cols, col_ok, H, H, False)
    dh_next = C.load_f32(dh_n + rows[:, None] * H + cols[None, :], m2)
    for k in range(T):
        t, valid = C.step_time(T - 1 - k, lens, REVERSE)
        vm = valid[:, None]
        at = (t * B + rows)[:, None] * H + cols[None, :]
        dh = C.load_f32(dy + at, m2 & vm) + dh_next  # from the output and from step t+1
        da = dh * _activate_grad(C.load_f32(f_seq + at, m2 & vm), RELU)
        da = tl.where(vm, da, 0.0)
        dh_prev = C.mm(da, w, UPCAST, PRECISION)  # through a_t = ... + W_hh h_{t-1}
        dh_next = tl.where(vm, dh_prev, dh_next)  # padding: the state passes through
        C.store(da_seq + at, da, m2)
        if STORE_DH:
            C.store(dh_seq + at, tl.where(vm, dh, 0.0), m2)
    C.store(dh0 + rows[:, None] * H + cols[None, :], dh_next, m2)


# ----------------------------------------------------------------- cooperative path


@triton.jit(do_not_specialize=["s_begin", "s_end"])
def _rnn_fwd_coop(
    ax, hx, wp, h_state, lens_ptr, probe, y, a_seq, sync, status,
    s_begin, s_end, B, H,
    BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr, KQ: tl.constexpr, HELD: tl.constexpr,
    RELU: tl.constexpr, HAS_PROBE: tl.constexpr, REVERSE: tl.constexpr, SYNC: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    """Steps s_begin .. s_end - 1 for this program's BH units of BB rows (see ``_coop``).
    hx (2, B, H): the exchange of h; h_state (B, H) fp32 carries h between launches."""
    rows, units, row_ok, m2, lens = X.tile(lens_ptr, B, H, BB, BH, BH)
    st = rows[:, None] * H + units[None, :]
    h = C.load_f32(h_state + st, m2)
    w = wp + tl.program_id(0) * H * BH
    held = X.hold(w, H, BH, KQ, HELD)  # the slice in registers, or streamed
    limit = X.poll_limit()
    for s in range(s_begin, s_end):
        tb, vm, acc = X.forward_step(s, lens, hx, w, held, rows, row_ok, B, H, BH, BB,
                                     BK, KQ, HELD, REVERSE, UPCAST, PRECISION)
        mv = m2 & vm
        at = tb[:, None] * H + units[None, :]
        a = C.load_f32(ax + at, mv) + acc
        h_t = _activate(a, RELU)
        if HAS_PROBE:
            h_t += C.load_f32(probe + at, mv)
        h = tl.where(vm, h_t, h)
        C.store(y + at, tl.where(vm, h_t, 0.0), m2)
        C.store(a_seq + at, tl.where(vm, a, 0.0), m2)
        C.store(X.half(hx, s + 1, B, H) + st, h, m2)
        limit = X.end_step(sync, status, s + 1, limit, SYNC)
    C.store(h_state + st, h, m2)


@triton.jit(do_not_specialize=["s_begin", "s_end"])
def _rnn_bwd_coop(
    dy, dax, wp, dh_carry, f_seq, lens_ptr, da_seq, dh_seq, sync, status,
    s_begin, s_end, T, B, H,
    BB: tl.constexpr, BH: tl.constexpr, BU: tl.constexpr, BK: tl.constexpr, KQ: tl.constexpr,
    HELD: tl.constexpr, RELU: tl.constexpr, STORE_DH: tl.constexpr, REVERSE: tl.constexpr,
    SYNC: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    """Iterations k = s_begin .. s_end - 1 of T + 1 (iteration T completes dh0). dax
    (2, B, H): the exchange of da; dh_carry (B, H) fp32: the gradient carried across
    padding steps."""
    rows, units, row_ok, m2, lens = X.tile(lens_ptr, B, H, BB, BU, BH)
    st = rows[:, None] * H + units[None, :]
    carry = C.load_f32(dh_carry + st, m2)
    w = wp + tl.program_id(0) * H * BU
    held = X.hold(w, H, BU, KQ, HELD)  # the slice in registers, or streamed
    limit = X.poll_limit()
    for k in range(s_begin, s_end):
        tb, vm, rec = X.backward_step(k, T, lens, dax, w, held, rows, row_ok, B, H, BU,
                                      BB, BK, KQ, HELD, REVERSE, UPCAST, PRECISION)
        mv = m2 & vm
        dh_next = carry + rec
        at = tb[:, None] * H + units[None, :]
        dh = C.load_f32(dy + at, mv) + dh_next  # from the output and from step t+1
        da = tl.where(vm, dh * _activate_grad(C.load_f32(f_seq + at, mv), RELU), 0.0)
        carry = tl.where(vm, 0.0, dh_next)  # padding: the state passes through
        if k < T:
            C.store(da_seq + at, da, m2)
            if STORE_DH:
                C.store(dh_seq + at, tl.where(vm, dh, 0.0), m2)
        C.store(X.half(dax, k + 1, B, H) + st, da, m2)
        limit = X.end_step(sync, status, k + 1, limit, SYNC)
    C.store(dh_carry + st, carry, m2)


# ----------------------------------------------------------------- tiled path


@triton.jit(do_not_specialize=["s"])
def _rnn_fwd_tile(
    s, ax, gh, h_state, h_mm, lens_ptr, probe, y, a_seq,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, RELU: tl.constexpr, HAS_PROBE: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """One step: gh = h·W_hhᵀ was computed by a GEMM; the rest of the cell, fused."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE)
    at = (t * B + rows)[:, None] * H + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    a = C.load_f32(ax + at, m2 & vm) + C.load_f32(gh + st, m2)
    h_t = _activate(a, RELU)
    h = C.load_f32(h_state + st, m2)
    C.commit_step(h_t, h, probe, y, h_state, h_mm, at, st, m2, vm, HAS_PROBE)
    C.store(a_seq + at, tl.where(vm, a, 0.0), m2)


@triton.jit(do_not_specialize=["s"])
def _rnn_bwd_tile(
    s, dy, rec, dh_dir, f_seq, lens_ptr, da_seq, da_mm, dh_seq,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, RELU: tl.constexpr, STORE_DH: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """One step back: dh_next = dh_dir + rec, where rec = da_{t+1}·W_hh came from a GEMM."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE)
    at = (t * B + rows)[:, None] * H + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    dh_next = C.load_f32(dh_dir + st, m2) + C.load_f32(rec + st, m2)
    dh = C.load_f32(dy + at, m2 & vm) + dh_next
    da = tl.where(vm, dh * _activate_grad(C.load_f32(f_seq + at, m2 & vm), RELU), 0.0)
    C.store(da_seq + at, da, m2)
    C.store(da_mm + st, da, m2)  # the next GEMM: rec = da·W_hh (zero rows at padding)
    C.store(dh_dir + st, tl.where(vm, 0.0, dh_next), m2)  # padding: the state passes through
    if STORE_DH:
        C.store(dh_seq + at, tl.where(vm, dh, 0.0), m2)


# ----------------------------------------------------------------- host functions


def _coop_forward(ax, h0, w, lens, h_probe, lay, *, relu, reverse):
    """The cooperative kernel (layout ``lay``): all T steps in one launch, hidden units
    split across programs."""
    T, B, H = ax.shape
    y = torch.empty_like(ax)
    a_seq = torch.empty_like(ax)
    h_state = h0.to(torch.float32, copy=True).contiguous()  # fp32 state, never h0 itself
    hx = torch.empty(2, B, H, dtype=w.dtype, device=ax.device)  # exchange of h_{t-1}
    hx[0] = h0
    X.run(
        _rnn_fwd_coop, lay, T,
        (ax, hx, X.pack_forward(w, 1, lay), h_state, lens,
         h_probe if h_probe is not None else y, y, a_seq),
        k_size=H, n_size=lay.BH, B=B, H=H, RELU=relu, HAS_PROBE=h_probe is not None,
        REVERSE=reverse, **C.dot_flags(ax),
    )
    return y, h_state.to(ax.dtype), a_seq


def _tiled_forward(ax, h0, w, lens, h_probe, *, relu, reverse):
    """Per step: the GEMM gh = h·W_hhᵀ, then one fused pointwise kernel."""
    T, B, H = ax.shape
    y = torch.empty_like(ax)
    a_seq = torch.empty_like(ax)
    probe = h_probe if h_probe is not None else y
    h_state, h_mm = C.tiled_state(h0, w)
    gh = torch.empty(B, H, dtype=w.dtype, device=ax.device)
    w_t = w.t()
    for s in range(T):
        torch.mm(h_mm, w_t, out=gh)
        _rnn_fwd_tile[C.tile_grid(B, H)](
            s, ax, gh, h_state, h_mm, lens, probe, y, a_seq, B, H,
            **C.tile_sizes(), RELU=relu, HAS_PROBE=h_probe is not None,
            REVERSE=reverse,
        )
    return y, h_state.to(ax.dtype), a_seq


def _coop_backward(dy, dh_n, w, f_seq, lens, lay, *, relu, reverse, need_dh):
    """The cooperative kernel back (layout ``lay``): T steps and the final dh0 in one
    launch. f_seq: the activation's values act(a_t)."""
    T, B, H = f_seq.shape
    da_seq = torch.empty_like(f_seq)
    dh_seq = torch.empty_like(f_seq) if need_dh else da_seq
    dax = torch.zeros(2, B, H, dtype=w.dtype, device=f_seq.device)  # exchange of da
    carry = dh_n.to(torch.float32, copy=True).contiguous()
    X.run(
        _rnn_bwd_coop, lay, T + 1,
        (dy, dax, X.pack_backward(w, lay), carry, f_seq, lens, da_seq, dh_seq),
        k_size=H, n_size=lay.BU, T=T, B=B, H=H, BU=lay.BU, RELU=relu, STORE_DH=need_dh,
        REVERSE=reverse, **C.dot_flags(f_seq),
    )
    return da_seq, carry.to(dh_n.dtype), dh_seq


def _tiled_backward(dy, dh_n, w, f_seq, lens, *, relu, reverse, need_dh):
    """Per step back: one fused pointwise kernel, then the GEMM rec = da·W_hh. f_seq: the
    activation's values act(a_t)."""
    T, B, H = f_seq.shape
    da_seq = torch.empty_like(f_seq)
    dh_seq = torch.empty_like(f_seq) if need_dh else da_seq
    dh_dir = dh_n.to(torch.float32, copy=True).contiguous()  # dh_next minus the GEMM part
    rec = torch.zeros(B, H, dtype=w.dtype, device=f_seq.device)  # da_{t+1}·W_hh
    da_mm = torch.empty(B, H, dtype=w.dtype, device=f_seq.device)
    for s in range(T - 1, -1, -1):
        _rnn_bwd_tile[C.tile_grid(B, H)](
            s, dy, rec, dh_dir, f_seq, lens, da_seq, da_mm, dh_seq, B, H,
            **C.tile_sizes(), RELU=relu, STORE_DH=need_dh, REVERSE=reverse,
        )
        torch.mm(da_mm, w, out=rec)
    return da_seq, (dh_dir + rec.float()).to(dh_n.dtype), dh_seq


class GpuRNN(RNNInferByForward):
    """Elman RNN, Triton (:class:`rnnlab.backends.contract.RNNKernels`)."""

    def forward(
        self, w: RNNWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None, relu: bool
    ) -> RNNForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T, B, _ = x.shape
        H = w_hh.shape[0]
        ax = project_inputs(x, w_ih, sum_bias(b_ih, b_hh)).contiguous()  # padding rows unread
        lens = C.full_lengths(lengths, T, B, x.device)
        w = w_hh.contiguous()
        probe = h_probe.contiguous() if h_probe is not None else None
        HP = C.pad(H)
        n_w = C.on_chip_bytes(HP * HP, x)
        coop = X.plan(B, H, 1, x.device)
        path = C.choose_path(n_w, coop)
        if path == "cooperative":
            try:
                return _coop_forward(ax, h0, w, lens, probe, coop, relu=relu, reverse=reverse)
            except X.BarrierTimeout:
                path = "tiled"
        if path == "tiled":
            return C.run_tiled(
                "rnn_forward", _tiled_forward, (ax, h0, w, lens, probe), relu=relu, reverse=reverse
            )
        y = torch.empty_like(ax)
        a_seq = torch.empty_like(ax)
        h_n = x.new_empty(B, H)
        _rnn_fwd_persistent[C.launch_grid(B)](
            ax, h0.contiguous(), w, lens, probe if probe is not None else y, y, h_n, a_seq, T, B, H,
            HP=HP, RELU=relu, HAS_PROBE=probe is not None,
            REVERSE=reverse, **C.persistent_settings(x, n_w),
        )
        return RNNForward(y, h_n, a_seq)

    def backward(
        self, w: RNNWeights, seq: Sequence, h0: Tensor, saved: RNNSaved, dy: Tensor,
        dh_n: Tensor, relu: bool, need_dh: bool, need_dx: bool,
    ) -> RNNGrads:
        (x, lengths, reverse), (w_ih, w_hh), y = seq, (w.w_ih, w.w_hh), saved.y
        T, B, _ = x.shape
        H = w_hh.shape[0]
        x = zero_padding(x, valid_mask(lengths, T))
        lens = C.full_lengths(lengths, T, B, x.device)
        w = w_hh.contiguous()
        dy = dy.contiguous()
        f_seq = activation_of(saved).contiguous()  # act(a_t): the derivative's source
        HP = C.pad(H)
        n_w = C.on_chip_bytes(HP * HP, x)
        coop = X.plan(B, H, 1, x.device)
        path = C.choose_path(n_w, coop)
        if path == "cooperative":
            try:
                da_seq, dh0, dh_seq = _coop_backward(
                    dy, dh_n, w, f_seq, lens, coop, relu=relu, reverse=reverse, need_dh=need_dh
                )
            except X.BarrierTimeout:
                path = "tiled"
        if path == "persistent":
            da_seq = torch.empty_like(f_seq)
            dh_seq = torch.empty_like(y) if need_dh else da_seq
            dh0 = torch.empty_like(h0)
            _rnn_bwd_persistent[C.launch_grid(B)](
                dy, dh_n.contiguous(), w, f_seq, lens, da_seq, dh_seq, dh0, T, B, H,
                HP=HP, RELU=relu, STORE_DH=need_dh, REVERSE=reverse,
                **C.persistent_settings(x, n_w),
            )
        elif path == "tiled":
            da_seq, dh0, dh_seq = C.run_tiled(
                "rnn_backward", _tiled_backward, (dy, dh_n, w, f_seq, lens),
                relu=relu, reverse=reverse, need_dh=need_dh,
            )
        dx, dw_ih, dw_hh, db = parameter_grads(da_seq, x, w_ih, y, h0, lengths, reverse, need_dx)
        dh_out = dh_seq if need_dh else empty_grad(y)
        return RNNGrads(dx, dh0, dw_ih, dw_hh, db, dh_out)

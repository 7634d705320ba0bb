"""Elman RNN, Triton backend.

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh        (B, H)
    h_t = tanh(a_t)   or   relu(a_t)

The input projection (all steps) and the weight gradients are GEMMs outside the
recurrence; the kernels run the serial part. Saved for backward: a (T,B,H), zero at
padding steps.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from rnnlab.backends.gpu import _common as C
from rnnlab.backends.portable._common import (
    empty_grad,
    input_grad,
    previous_states,
    project_inputs,
    sum_bias,
    valid_mask,
    weight_grad,
    zero_padding,
)


@triton.jit
def _activate(a, RELU: tl.constexpr):
    if RELU:
        h = tl.maximum(a, 0.0)
    else:
        h = C.tanh(a)
    return h


@triton.jit
def _activate_grad(a, RELU: tl.constexpr):
    """relu'(a) = [a > 0],  tanh'(a) = 1 - tanh²(a)."""
    if RELU:
        d = tl.where(a > 0, 1.0, 0.0)
    else:
        th = C.tanh(a)
        d = 1.0 - th * th
    return d


# ----------------------------------------------------------------- persistent path


@triton.jit
def _rnn_fwd_persistent(
    ax, h0, w_hh, lens_ptr, probe, y, h_n, a_seq,
    T, B, H,
    HP: tl.constexpr, BLOCK_B: tl.constexpr, RELU: tl.constexpr, HAS_PROBE: tl.constexpr,
    REVERSE: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, HP)
    row_ok = rows < B
    col_ok = cols < H
    lens = tl.load(lens_ptr + rows, mask=row_ok, other=0)
    # W_hhᵀ (HP, HP), on chip for the whole sequence: element [k, j] = W_hh[j, k]
    w_t = tl.load(
        w_hh + cols[None, :] * H + cols[:, None], mask=col_ok[:, None] & col_ok[None, :], other=0.0
    )
    m2 = row_ok[:, None] & col_ok[None, :]
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
    dy, dh_n, w_hh, a_seq, lens_ptr, da_seq, dh_seq, dh0,
    T, B, H,
    HP: tl.constexpr, BLOCK_B: tl.constexpr, RELU: tl.constexpr, STORE_DH: tl.constexpr,
    REVERSE: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, HP)
    row_ok = rows < B
    col_ok = cols < H
    lens = tl.load(lens_ptr + rows, mask=row_ok, other=0)
    # W_hh (HP, HP), on chip: element [j, k] = W_hh[j, k]
    w = tl.load(
        w_hh + cols[:, None] * H + cols[None, :], mask=col_ok[:, None] & col_ok[None, :], other=0.0
    )
    m2 = row_ok[:, None] & col_ok[None, :]
    dh_next = C.load_f32(dh_n + rows[:, None] * H + cols[None, :], m2)
    for k in range(T):
        t, valid = C.step_time(T - 1 - k, lens, REVERSE)
        vm = valid[:, None]
        at = (t * B + rows)[:, None] * H + cols[None, :]
        dh = C.load_f32(dy + at, m2 & vm) + dh_next  # from the output and from step t+1
        da = dh * _activate_grad(C.load_f32(a_seq + at, m2 & vm), RELU)
        da = tl.where(vm, da, 0.0)
        dh_prev = C.mm(da, w, UPCAST, PRECISION)  # through a_t = ... + W_hh h_{t-1}
        dh_next = tl.where(vm, dh_prev, dh_next)  # padding: the state passes through
        C.store(da_seq + at, da, m2)
        if STORE_DH:
            C.store(dh_seq + at, tl.where(vm, dh, 0.0), m2)
    C.store(dh0 + rows[:, None] * H + cols[None, :], dh_next, m2)


# ----------------------------------------------------------------- tiled path


@triton.jit(do_not_specialize=["s"])
def _rnn_fwd_tile(
    s, ax, gh, h_state, h_mm, lens_ptr, probe, y, a_seq,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, RELU: tl.constexpr, HAS_PROBE: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """One step: gh = h·W_hhᵀ was computed by a GEMM; the rest of the cell, fused."""
    rows = tl.program_id(0) * TILE_B + tl.arange(0, TILE_B)
    cols = tl.program_id(1) * TILE_H + tl.arange(0, TILE_H)
    m2 = (rows < B)[:, None] & (cols < H)[None, :]
    lens = tl.load(lens_ptr + rows, mask=rows < B, other=0)
    t, valid = C.step_time(s, lens, REVERSE)
    vm = valid[:, None]
    at = (t * B + rows)[:, None] * H + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    a = C.load_f32(ax + at, m2 & vm) + C.load_f32(gh + st, m2)
    h_t = _activate(a, RELU)
    if HAS_PROBE:
        h_t += C.load_f32(probe + at, m2 & vm)
    h = tl.where(vm, h_t, C.load_f32(h_state + st, m2))
    C.store(h_state + st, h, m2)
    C.store(h_mm + st, h, m2)
    C.store(y + at, tl.where(vm, h_t, 0.0), m2)
    C.store(a_seq + at, tl.where(vm, a, 0.0), m2)


@triton.jit(do_not_specialize=["s"])
def _rnn_bwd_tile(
    s, dy, rec, dh_dir, a_seq, lens_ptr, da_seq, da_mm, dh_seq,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, RELU: tl.constexpr, STORE_DH: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """One step back: dh_next = dh_dir + rec, where rec = da_{t+1}·W_hh came from a GEMM."""
    rows = tl.program_id(0) * TILE_B + tl.arange(0, TILE_B)
    cols = tl.program_id(1) * TILE_H + tl.arange(0, TILE_H)
    m2 = (rows < B)[:, None] & (cols < H)[None, :]
    lens = tl.load(lens_ptr + rows, mask=rows < B, other=0)
    t, valid = C.step_time(s, lens, REVERSE)
    vm = valid[:, None]
    at = (t * B + rows)[:, None] * H + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    dh_next = C.load_f32(dh_dir + st, m2) + C.load_f32(rec + st, m2)
    dh = C.load_f32(dy + at, m2 & vm) + dh_next
    da = tl.where(vm, dh * _activate_grad(C.load_f32(a_seq + at, m2 & vm), RELU), 0.0)
    C.store(da_seq + at, da, m2)
    C.store(da_mm + st, da, m2)  # the next GEMM: rec = da·W_hh (zero rows at padding)
    C.store(dh_dir + st, tl.where(vm, 0.0, dh_next), m2)  # padding: the state passes through
    if STORE_DH:
        C.store(dh_seq + at, tl.where(vm, dh, 0.0), m2)


# ----------------------------------------------------------------- host functions


def rnn_forward(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
    relu: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns y (T,B,H), h_n (B,H) and the pre-activations a (T,B,H), zero at padding."""
    T, B, _ = x.shape
    H = w_hh.shape[0]
    ax = project_inputs(x, w_ih, sum_bias(b_ih, b_hh)).contiguous()  # padding rows unread
    lens = C.full_lengths(lengths, T, B, x.device)
    w = w_hh.contiguous()
    probe = h_probe.contiguous() if h_probe is not None else None
    HP = C.pad(H)
    if not C.use_persistent(HP * HP):
        return C.run_tiled(
            "rnn_forward", _tiled_forward, (ax, h0, w, lens, probe), relu=relu, reverse=reverse
        )
    y = torch.empty_like(ax)
    a_seq = torch.empty_like(ax)
    h_n = x.new_empty(B, H)
    precision, upcast = C.dot_settings(x)
    _rnn_fwd_persistent[C.launch_grid(B)](
        ax, h0.contiguous(), w, lens, probe if probe is not None else y, y, h_n, a_seq, T, B, H,
        HP=HP, BLOCK_B=C.BLOCK_B, RELU=relu, HAS_PROBE=probe is not None,
        REVERSE=reverse, UPCAST=upcast, PRECISION=precision, num_warps=C.num_warps(HP * HP),
    )
    return y, h_n, a_seq


def _tiled_forward(ax, h0, w, lens, h_probe, *, relu, reverse):
    """Per step: the GEMM gh = h·W_hhᵀ, then one fused pointwise kernel."""
    T, B, H = ax.shape
    y = torch.empty_like(ax)
    a_seq = torch.empty_like(ax)
    probe = h_probe if h_probe is not None else y
    h_state = h0.to(torch.float32, copy=True).contiguous()  # fp32 state, never h0 itself
    h_mm = h_state if w.dtype == torch.float32 else h0.to(w.dtype, copy=True).contiguous()
    gh = torch.empty(B, H, dtype=w.dtype, device=ax.device)
    w_t = w.t()
    for s in range(T):
        torch.mm(h_mm, w_t, out=gh)
        _rnn_fwd_tile[C.tile_grid(B, H)](
            s, ax, gh, h_state, h_mm, lens, probe, y, a_seq, B, H,
            TILE_B=C.TILE_B, TILE_H=C.TILE_H, RELU=relu, HAS_PROBE=h_probe is not None,
            REVERSE=reverse,
        )
    return y, h_state.to(ax.dtype), a_seq


def rnn_backward(
    dy: Tensor,
    dh_n: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    y: Tensor,
    a_seq: Tensor,
    lengths: Tensor | None,
    reverse: bool,
    relu: bool,
    need_dh: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns dx, dh0, dW_ih, dW_hh, db (for each of b_ih and b_hh) and dh (total dL/dh_t)."""
    T, B, _ = x.shape
    H = w_hh.shape[0]
    x = zero_padding(x, valid_mask(lengths, T))
    lens = C.full_lengths(lengths, T, B, x.device)
    w = w_hh.contiguous()
    dy = dy.contiguous()
    a_seq = a_seq.contiguous()
    HP = C.pad(H)
    if C.use_persistent(HP * HP):
        da_seq = torch.empty_like(a_seq)
        dh_seq = torch.empty_like(y) if need_dh else da_seq
        dh0 = torch.empty_like(h0)
        precision, upcast = C.dot_settings(x)
        _rnn_bwd_persistent[C.launch_grid(B)](
            dy, dh_n.contiguous(), w, a_seq, lens, da_seq, dh_seq, dh0, T, B, H,
            HP=HP, BLOCK_B=C.BLOCK_B, RELU=relu, STORE_DH=need_dh, REVERSE=reverse,
            UPCAST=upcast, PRECISION=precision, num_warps=C.num_warps(HP * HP),
        )
    else:
        da_seq, dh0, dh_seq = C.run_tiled(
            "rnn_backward", _tiled_backward, (dy, dh_n, w, a_seq, lens),
            relu=relu, reverse=reverse, need_dh=need_dh,
        )
    h_prev = previous_states(y, h0, lengths, reverse)
    dx = input_grad(da_seq, w_ih)
    dw_ih = weight_grad(da_seq, x)
    dw_hh = weight_grad(da_seq, h_prev)
    db = da_seq.sum(dim=(0, 1))
    dh_out = dh_seq if need_dh else empty_grad(y)
    return dx, dh0, dw_ih, dw_hh, db, dh_out


def _tiled_backward(dy, dh_n, w, a_seq, lens, *, relu, reverse, need_dh):
    """Per step back: one fused pointwise kernel, then the GEMM rec = da·W_hh."""
    T, B, H = a_seq.shape
    da_seq = torch.empty_like(a_seq)
    dh_seq = torch.empty_like(a_seq) if need_dh else da_seq
    dh_dir = dh_n.to(torch.float32, copy=True).contiguous()  # dh_next minus the GEMM part
    rec = torch.zeros(B, H, dtype=w.dtype, device=a_seq.device)  # da_{t+1}·W_hh
    da_mm = torch.empty(B, H, dtype=w.dtype, device=a_seq.device)
    for s in range(T - 1, -1, -1):
        _rnn_bwd_tile[C.tile_grid(B, H)](
            s, dy, rec, dh_dir, a_seq, lens, da_seq, da_mm, dh_seq, B, H,
            TILE_B=C.TILE_B, TILE_H=C.TILE_H, RELU=relu, STORE_DH=need_dh, REVERSE=reverse,
        )
        torch.mm(da_mm, w, out=rec)
    return da_seq, (dh_dir + rec.float()).to(dh_n.dtype), dh_seq

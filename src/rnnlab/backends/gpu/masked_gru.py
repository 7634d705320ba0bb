"""GRU with recurrent dropout and zoneout, Triton backend, both placements of the reset
gate: the tiled path of :mod:`.gru` with the masks added.

The equations and symbols are those of :mod:`rnnlab.reference.gru_masked` (d the recurrent
dropout multiplier, u_{t-1} = d ⊙ h_{t-1} what the recurrent products read, k the zoneout
share); the forward saves what the plain GRU saves, with u_{t-1} in hn
(:class:`rnnlab.backends.contract.MaskedGRUKernels`). Per step, as the plain GRU's tiled
path, with u in the GEMMs: reset after, the GEMM gh = u·W_hhᵀ + b_hh and one fused
pointwise kernel (gates, h̃_t, zoneout, u_t = d ⊙ h_t for the next GEMM); reset before,
the GEMM of r, z, the plain kernel that leaves r ⊙ u, the GEMM hn and the fused kernel.
Back: one pointwise kernel and the GEMM du = [dr, dz, dn ⊙ r]·W_hh per step (reset before:
the plain second kernel and GEMMs, with u for h_{t-1} in dr and the part of du through
r ⊙ u kept apart in ``du_dir``); d multiplies du where the next step back reads it. Every
call takes this path, whatever ``RNNLAB_GPU_PATH`` says; ``RNNLAB_GPU_GRAPHS=1`` replays
it as the plain one's.
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
from rnnlab.backends.contract import GRUForward, GRUGrads, GRUSaved, GRUWeights, Masks, Sequence
from rnnlab.backends.gpu import _common as C
from rnnlab.backends.gpu.gru import (
    _addmm,
    _gru_bwd_r_tile,
    _gru_rz_tile,
    _store_gates,
    _tile_gate_grads,
    _tile_gates,
)

__all__ = ["GpuMaskedGRU"]


@triton.jit(do_not_specialize=["s"])
def _fwd_tile(
    s, gx, gh, h_state, u_mm, lens_ptr, probe, y, gates, drop_h, keep_h, k_t, k_b, k_n,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, RESET_AFTER: tl.constexpr,
    HAS_PROBE: tl.constexpr, HAS_DROP: tl.constexpr, HAS_KEEP_H: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """A step after its GEMM: with the reset after, gh = u·W_hhᵀ + b_hh (B, 3H); before,
    gh = hn (B, H) and r, z were stored by ``_gru_rz_tile``. h̃_t reads h_{t-1} itself."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE)
    mv = m2 & vm
    tb = t * B + rows
    xt = tb[:, None] * (3 * H) + cols[None, :]
    gt = tb[:, None] * (4 * H) + cols[None, :]
    ht = tb[:, None] * H + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    h = C.load_f32(h_state + st, m2)
    r, z, n, hn = _tile_gates(gx, gh, gates, rows, cols, xt, gt, st, mv, m2, H, RESET_AFTER)
    C.commit_masked_step(
        n + z * (h - n), h, keep_h, C.keep_offsets(t, rows, cols, k_t, k_b, k_n), drop_h, probe,
        y, h_state, u_mm, ht, st, m2, vm, HAS_KEEP_H, HAS_DROP, HAS_PROBE,
    )
    _store_gates(gates, gt, r, z, n, hn, vm, m2, H)


@triton.jit(do_not_specialize=["s"])
def _bwd_tile(
    s, dy, rec, du_dir, dh_dir, gates, h_prev_seq, lens_ptr, drop_h, keep_h, k_t, k_b, k_n,
    dgx, dpre_mm, dn_mm, dh_seq,
    B, H,
    TILE_B: tl.constexpr, TILE_H: tl.constexpr, RESET_AFTER: tl.constexpr,
    STORE_DH: tl.constexpr, HAS_DROP: tl.constexpr, HAS_KEEP_H: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """One step back from dh_t = dy_t + dh_dir + d ⊙ du, du = rec (the last GEMM's dpre·W)
    (+ du_dir, reset before: the part through r ⊙ u, then cleared for ``_gru_bwd_r_tile``).
    The gate gradients are the plain GRU's from dh̃_t = (1 - k_t) ⊙ dh_t; h_{t-1} gets
    z_t ⊙ dh̃_t + k_t ⊙ dh_t directly."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, TILE_B, TILE_H, REVERSE)
    mv = m2 & vm
    tb = t * B + rows
    xt = tb[:, None] * (3 * H) + cols[None, :]
    gt = tb[:, None] * (4 * H) + cols[None, :]
    ht = tb[:, None] * H + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    du = C.load_f32(rec + st, m2)
    if not RESET_AFTER:
        du += C.load_f32(du_dir + st, m2)
        C.store(du_dir + st, tl.zeros_like(du), m2)
    dh_next, dh, dh_tilde, carried = C.masked_grad_start(
        du, dy, dh_dir, drop_h, keep_h, ht, st, C.keep_offsets(t, rows, cols, k_t, k_b, k_n),
        m2, vm, HAS_DROP, HAS_KEEP_H,
    )
    z = _tile_gate_grads(dh_tilde, gates, h_prev_seq, dgx, dpre_mm, dn_mm, rows, cols, xt, gt,
                         ht, st, mv, vm, m2, H, RESET_AFTER)
    C.store(dh_dir + st, tl.where(vm, dh_tilde * z + carried, dh_next), m2)  # padding: as is
    if STORE_DH:
        C.store(dh_seq + ht, tl.where(vm, dh, 0.0), m2)


# ----------------------------------------------------------------- host functions


def _tiled_forward(gx, h0, w, b_hh, drop_h, keep_h, lens, h_probe, *, reverse, reset_after):
    """Per step, reset after: the GEMM gh = u·W_hhᵀ + b_hh, then one fused pointwise kernel.
    Reset before: GEMM (r, z), kernel (r ⊙ u), GEMM hn = (r ⊙ u)·W_hnᵀ + b_hn, kernel."""
    T, B, G = gx.shape
    H = h0.shape[-1]
    y = gx.new_empty(T, B, H)
    gates = gx.new_empty(T, B, 4 * H)
    probe = h_probe if h_probe is not None else y
    h_state = h0.to(torch.float32, copy=True).contiguous()  # fp32 state, never h0 itself
    u_mm = C.dropped(drop_h, h_state).to(w.dtype)  # u_0 = d ⊙ h_0; fp32 without d: h_state
    mm_dtype = dict(dtype=w.dtype, device=gx.device)
    grid = C.tile_grid(B, H)
    flags = dict(**C.tile_sizes(), REVERSE=reverse)
    masks, mask_flags = C.h_masks(drop_h, keep_h, y)
    step = dict(HAS_PROBE=h_probe is not None, RESET_AFTER=reset_after, **mask_flags, **flags)
    if reset_after:
        gh = torch.empty(B, G, **mm_dtype)
        for s in range(T):
            _addmm(b_hh, u_mm, w.t(), gh)
            _fwd_tile[grid](s, gx, gh, h_state, u_mm, lens, probe, y, gates, *masks, B, H,
                            **step)
    else:
        w_rz, w_n = w[: 2 * H], w[2 * H :]
        b_rz = b_hh[: 2 * H] if b_hh is not None else None
        b_n = b_hh[2 * H :] if b_hh is not None else None
        g_rz = torch.empty(B, 2 * H, **mm_dtype)
        ru_mm = torch.empty(B, H, **mm_dtype)
        hn = torch.empty(B, H, **mm_dtype)
        for s in range(T):
            _addmm(b_rz, u_mm, w_rz.t(), g_rz)
            # the plain kernel's r ⊙ h with u for h: r ⊙ u, the input of W_hn
            _gru_rz_tile[grid](s, gx, g_rz, u_mm, lens, gates, ru_mm, B, H, **flags)
            _addmm(b_n, ru_mm, w_n.t(), hn)
            _fwd_tile[grid](s, gx, hn, h_state, u_mm, lens, probe, y, gates, *masks, B, H,
                            **step)
    return y, h_state.to(gx.dtype), gates


def _tiled_backward(dy, dh_n, w, drop_h, keep_h, gates, h_prev_seq, u_seq, lens, *, reverse,
                    reset_after, need_dh):
    """Per step back, reset after: one fused pointwise kernel, then the GEMM
    du = [dr, dz, dn ⊙ r]·W_hh. Reset before: kernel, GEMM dru = dn·W_hn, the plain second
    kernel (dr from u; r ⊙ dru into du_dir), GEMM du = [dr, dz]·W_rz."""
    T, B, _ = gates.shape
    H = dh_n.shape[-1]
    dgx = gates.new_empty(T, B, 3 * H)
    dh_seq = dy.new_empty(T, B, H) if need_dh else dgx
    mm_dtype = dict(dtype=w.dtype, device=gates.device)
    grid = C.tile_grid(B, H)
    flags = dict(**C.tile_sizes(), REVERSE=reverse)
    dh_dir = dh_n.to(torch.float32, copy=True).contiguous()  # dh_next less d ⊙ du
    du_dir = torch.zeros(B, H, dtype=torch.float32, device=gates.device)  # du through r ⊙ u
    rec = torch.zeros(B, H, **mm_dtype)  # the last step's dpre·W
    dpre_mm = torch.empty(B, (3 if reset_after else 2) * H, **mm_dtype)
    dn_mm = torch.empty(B, H, **mm_dtype)
    dru = torch.empty(B, H, **mm_dtype)
    w_rz, w_n = w[: 2 * H], w[2 * H :]
    masks, mask_flags = C.h_masks(drop_h, keep_h, dgx)
    for s in range(T - 1, -1, -1):
        _bwd_tile[grid](
            s, dy, rec, du_dir, dh_dir, gates, h_prev_seq, lens, *masks, dgx, dpre_mm, dn_mm,
            dh_seq, B, H, RESET_AFTER=reset_after, STORE_DH=need_dh, **mask_flags, **flags,
        )
        if reset_after:
            torch.mm(dpre_mm, w, out=rec)
        else:
            torch.mm(dn_mm, w_n, out=dru)
            # the plain kernel with u for h_{t-1}: dr from u, r ⊙ dru added to du_dir
            _gru_bwd_r_tile[grid](s, dru, du_dir, gates, u_seq, lens, dgx, dpre_mm, B, H,
                                  **flags)
            torch.mm(dpre_mm, w_rz, out=rec)
    dh0 = dh_dir + C.dropped(drop_h, rec.float() + du_dir)
    return dgx, dh0.to(dh_n.dtype), dh_seq


class GpuMaskedGRU:
    """GRU with recurrent dropout and zoneout, Triton
    (:class:`rnnlab.backends.contract.MaskedGRUKernels`)."""

    def forward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, h_probe: Tensor | None,
        reset_after: bool,
    ) -> GRUForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T, B, _ = x.shape
        gx = project_inputs(x, w_ih, b_ih).contiguous()  # (T, B, 3H), padding rows unread
        args = (
            gx, h0, w_hh.contiguous(), b_hh.contiguous() if b_hh is not None else None,
            masks.drop_h, masks.keep_h, C.full_lengths(lengths, T, B, x.device),
            h_probe.contiguous() if h_probe is not None else None,
        )
        return GRUForward(*C.run_tiled("masked_gru_forward", _tiled_forward, args,
                                       reverse=reverse, reset_after=reset_after))

    def backward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, saved: GRUSaved,
        dy: Tensor, dh_n: Tensor, reset_after: bool, need_dh: bool,
    ) -> GRUGrads:
        (x, lengths, reverse), (w_ih, w_hh), (y, gates) = seq, (w.w_ih, w.w_hh), saved
        T, B, _ = x.shape
        x = zero_padding(x, valid_mask(lengths, T))
        h_prev_seq = previous_states(y, h0, lengths, reverse).contiguous()
        u_seq = C.dropped(masks.drop_h, h_prev_seq).contiguous()  # u_{t-1} = d ⊙ h_{t-1}
        args = (
            dy.contiguous(), dh_n, w_hh.contiguous(), masks.drop_h, masks.keep_h,
            gates.contiguous(), h_prev_seq, u_seq, C.full_lengths(lengths, T, B, x.device),
        )
        dgx, dh0, dh_seq = C.run_tiled(
            "masked_gru_backward", _tiled_backward, args, reverse=reverse,
            reset_after=reset_after, need_dh=need_dh,
        )
        dx, dw_ih, dw_hh, db_ih, db_hh = gru_parameter_grads(
            dgx, x, w_ih, u_seq, gates, reset_after
        )
        dh_out = dh_seq if need_dh else empty_grad(y)
        return GRUGrads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dh_out)


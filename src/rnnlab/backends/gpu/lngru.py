"""Layer-normalised GRU, Triton backend (the tiled path's form, rows as in :mod:`.lnlstm`).

The equations and their symbols are those of :mod:`rnnlab.reference.lngru`: u_t =
LN(W_ih x_t; γ_ih) + b_ih, v_t = LN(W_hh h_{t-1}; γ_hh) + b_hh, then torch.nn's GRU step
(reset after the recurrent product) on u_t and v_t; what the forward saves,
:class:`rnnlab.backends.contract.GRUForward` (r, z, n and hn = v_n).

Forward: u_t for all steps is one GEMM and one normalisation; per step the GEMM
h_{t-1}·W_hhᵀ, then one row kernel (the three gates' slots of a (ROWS, 4, HP) block)
normalising it and running the GRU step. Backward: LN(W_hh h_{t-1}) recomputed for all
steps before the loop; per step one row kernel (the gates' gradients and the backward of
LN(W_hh h_{t-1}) into dp^hh_t) and the GEMM dp^hh_t·W_hh; after the loop the backward of
LN(W_ih x_t) and every parameter gradient as one GEMM or reduction over all steps.
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
    valid_mask,
    weight_grad,
    zero_padding,
)
from rnnlab.backends._layer_norm import EPS, normalise, normalise_backward
from rnnlab.backends.contract import (
    GRUForward,
    GRUSaved,
    LNGRUGrads,
    LNGRUInferByForward,
    LNGRUWeights,
    Sequence,
)
from rnnlab.backends.gpu import _common as C
from rnnlab.backends.gpu.gru import _store_dgx, _store_gates, _tiled_step_back
from rnnlab.backends.gpu.lnlstm import (
    _gains,
    _gate,
    _load3,
    _normalise,
    _recurrent_norm_backward,
    _slots,
    _stack,
    row_settings,
)


@triton.jit(do_not_specialize=["s"])
def _lngru_fwd_rows(
    s, gx, gh, gamma_hh, b_hh, h_state, h_mm, lens_ptr, probe, y, gates,
    B, H,
    ROWS: tl.constexpr, HP: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_PROBE: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """One step after the GEMM gh = h_{t-1}·W_hhᵀ (B, 3H); gx holds u_t for all steps."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, ROWS, HP, REVERSE)
    k, ok = _slots(m2, 3)
    tb = t * B + rows
    xt = tb[:, None] * (3 * H) + cols[None, :]
    st = rows[:, None] * H + cols[None, :]
    v_hat, _ = _normalise(_load3(gh, rows[:, None] * (3 * H) + cols[None, :], k, H, ok), ok,
                          3 * H)
    v = _gains(gamma_hh, k, cols, H, ok) * v_hat  # (ROWS, 4, HP)
    if HAS_BIAS:
        v += _gains(b_hh, k, cols, H, ok)
    u = _load3(gx, xt, k, H, ok & vm[:, :, None])
    r = tl.sigmoid(_gate(u, k, 0) + _gate(v, k, 0))
    z = tl.sigmoid(_gate(u, k, 1) + _gate(v, k, 1))
    hn = _gate(v, k, 2)
    n = C.tanh(_gate(u, k, 2) + r * hn)
    h = C.load_f32(h_state + st, m2)
    C.commit_step(n + z * (h - n), h, probe, y, h_state, h_mm, tb[:, None] * H + cols[None, :],
                  st, m2, vm, HAS_PROBE)
    _store_gates(gates, tb[:, None] * (4 * H) + cols[None, :], r, z, n, hn, vm, m2, H)


@triton.jit(do_not_specialize=["s"])
def _lngru_bwd_rows(
    s, dy, rec, dh_dir, gates, h_prev_seq, v_hh, rstd_hh, gamma_hh, lens_ptr, du_seq,
    dp_hh_seq, dpre_mm, dh_seq,
    B, H,
    ROWS: tl.constexpr, HP: tl.constexpr, STORE_DH: tl.constexpr, REVERSE: tl.constexpr,
):
    """One step back from dh_t = dy_t + dh_dir + rec (rec = dp^hh_{t+1}·W_hh from the last
    GEMM); v_hh, rstd_hh: LN(W_hh h_{t-1})'s v̂ (T, B, 3H) and rstd (T, B) of every step.
    Leaves du_t (T, B, 3H) and dp^hh_t, also in dpre_mm for the next GEMM."""
    rows, cols, m2, t, vm = C.tile_step(s, lens_ptr, B, H, ROWS, HP, REVERSE)
    k, ok = _slots(m2, 3)
    tb = t * B + rows
    xt = tb[:, None] * (3 * H) + cols[None, :]
    gt = tb[:, None] * (4 * H) + cols[None, :]
    r, dz_pre, dn_pre = _tiled_step_back(dy, rec, dh_dir, gates, h_prev_seq, dh_seq, gt,
                                         tb[:, None] * H + cols[None, :],
                                         rows[:, None] * H + cols[None, :], m2, vm, H, STORE_DH)
    hn = C.load_f32(gates + gt + 3 * H, m2 & vm)
    dr_pre = dn_pre * hn * r * (1.0 - r)  # n = tanh(u_n + r ⊙ hn)
    _store_dgx(du_seq, xt, dr_pre, dz_pre, dn_pre, m2, H)
    _recurrent_norm_backward(  # dv_t = [du_r, du_z, du_n ⊙ r]
        _stack(dr_pre, dz_pre, dn_pre * r, dn_pre, k), gamma_hh, v_hh, rstd_hh, dp_hh_seq,
        dpre_mm, xt, rows, cols, tb, k, ok, vm, B, H, 3,
    )


def _tiled_forward(gx, h0, w, gamma_hh, b_hh, lens, h_probe, *, reverse):
    """Per step: the GEMM gh = h·W_hhᵀ and one row kernel."""
    T, B, G = gx.shape
    H = h0.shape[-1]
    y = gx.new_empty(T, B, H)
    gates = gx.new_empty(T, B, 4 * H)
    probe = h_probe if h_probe is not None else y
    h_state, h_mm = C.tiled_state(h0, w)
    gh = torch.empty(B, G, dtype=w.dtype, device=gx.device)
    grid, settings = row_settings(B, H)
    for s in range(T):
        torch.mm(h_mm, w.t(), out=gh)
        _lngru_fwd_rows[grid](
            s, gx, gh, gamma_hh, b_hh if b_hh is not None else gamma_hh, h_state, h_mm, lens,
            probe, y, gates, B, H, HAS_BIAS=b_hh is not None, HAS_PROBE=h_probe is not None,
            REVERSE=reverse, **settings,
        )
    return y, h_state.to(gx.dtype), gates


def _tiled_backward(dy, dh_n, w, gates, h_prev_seq, v_hh, rstd_hh, gamma_hh, lens, *, reverse,
                    need_dh):
    """Per step back: one row kernel, then the GEMM rec = dp^hh·W_hh."""
    T, B, _ = gates.shape
    H = dh_n.shape[-1]
    du_seq = gates.new_empty(T, B, 3 * H)  # gradients of u_t
    dp_hh_seq = torch.empty_like(du_seq)  # gradients of W_hh h_{t-1}
    dh_seq = dy.new_empty(T, B, H) if need_dh else du_seq
    dh_dir = dh_n.to(torch.float32, copy=True).contiguous()  # dh_next minus the GEMM part
    rec = torch.zeros(B, H, dtype=w.dtype, device=gates.device)  # dp^hh_{t+1}·W_hh
    dpre_mm = torch.empty(B, 3 * H, dtype=w.dtype, device=gates.device)
    grid, settings = row_settings(B, H)
    for s in range(T - 1, -1, -1):
        _lngru_bwd_rows[grid](
            s, dy, rec, dh_dir, gates, h_prev_seq, v_hh, rstd_hh, gamma_hh, lens, du_seq,
            dp_hh_seq, dpre_mm, dh_seq, B, H, STORE_DH=need_dh, REVERSE=reverse, **settings,
        )
        torch.mm(dpre_mm, w, out=rec)
    return du_seq, dp_hh_seq, (dh_dir + rec.float()).to(dh_n.dtype), dh_seq


class GpuLNGRU(LNGRUInferByForward):
    """Layer-normalised GRU, Triton (:class:`rnnlab.backends.contract.LNGRUKernels`)."""

    def forward(
        self, w: LNGRUWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None
    ) -> GRUForward:
        x, lengths, reverse = seq
        T, B, _ = x.shape
        H = h0.shape[-1]
        gx = F.layer_norm(  # u_t = LN(W_ih x_t; γ_ih) + b_ih, all steps; padding rows unread
            project_inputs(x, w.w_ih, None), (3 * H,), w.gamma_ih, w.b_ih, EPS
        ).contiguous()
        y, h_n, gates = C.run_tiled(
            "lngru_forward", _tiled_forward,
            (gx, h0, w.w_hh.contiguous(), w.gamma_hh.contiguous(),
             w.b_hh.contiguous() if w.b_hh is not None else None,
             C.full_lengths(lengths, T, B, x.device),
             h_probe.contiguous() if h_probe is not None else None),
            reverse=reverse,
        )
        return GRUForward(y, h_n, gates)

    def backward(
        self, w: LNGRUWeights, seq: Sequence, h0: Tensor, saved: GRUSaved, dy: Tensor,
        dh_n: Tensor, need_dh: bool, need_dx: bool,
    ) -> LNGRUGrads:
        (x, lengths, reverse), (y, gates) = seq, saved
        T, B, _ = x.shape
        H = h0.shape[-1]
        x = zero_padding(x, valid_mask(lengths, T))
        h_prev_seq = previous_states(y, h0, lengths, reverse).contiguous()
        # both normalisations of every step, recomputed in fp32 (for bf16 too)
        v_ih, rstd_ih = normalise(project_inputs(x, w.w_ih, None).float())  # (T, B, 3H)
        v_hh, rstd_hh = normalise(project_inputs(h_prev_seq, w.w_hh, None).float())
        du_seq, dp_hh_seq, dh0, dh_seq = C.run_tiled(
            "lngru_backward", _tiled_backward,
            (dy.contiguous(), dh_n, w.w_hh.contiguous(), gates.contiguous(), h_prev_seq, v_hh,
             rstd_hh.contiguous(), w.gamma_hh.contiguous(),
             C.full_lengths(lengths, T, B, x.device)),
            reverse=reverse, need_dh=need_dh,
        )
        dv_seq = torch.cat([du_seq[..., : 2 * H], du_seq[..., 2 * H :] * gates[..., :H]], dim=2)
        dp_ih = normalise_backward(du_seq.float() * w.gamma_ih, v_ih, rstd_ih).to(x.dtype)
        return LNGRUGrads(
            dx=input_grad(dp_ih, w.w_ih, need_dx),
            dh0=dh0,
            dw_ih=weight_grad(dp_ih, x),
            dw_hh=weight_grad(dp_hh_seq, h_prev_seq),
            db_ih=du_seq.sum(dim=(0, 1)),
            db_hh=dv_seq.sum(dim=(0, 1)),
            dgamma_ih=(du_seq * v_ih).sum(dim=(0, 1)).to(x.dtype),
            dgamma_hh=(dv_seq * v_hh).sum(dim=(0, 1)).to(x.dtype),
            dh=dh_seq if need_dh else empty_grad(y),
        )

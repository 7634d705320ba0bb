"""rnnlab::mingru / rnnlab::minlstm: against the reference (parallel scan and loop),
the scan against the loop, opcheck of the forward and backward ops, double backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import ops_min, reference
from rnnlab.scan import linear_scan

OPS = {"mingru": ops_min.mingru, "minlstm": ops_min.minlstm}
BACKWARD_OPS = {"mingru": ops_min.mingru_backward, "minlstm": ops_min.minlstm_backward}
REFERENCE = {
    "mingru": (reference.mingru_forward, reference.mingru_backward),
    "minlstm": (reference.minlstm_forward, reference.minlstm_backward),
}


def _args(family, dtype, *, T=7, B=3, I=4, H=5, lengths=None, probe=False, bias=True,
          reverse=False, parallel=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    G = ops_min.GATE_BLOCKS[family]

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=dtype)).requires_grad_()

    return (
        rand(T, B, I), rand(B, H), rand(G * H, I, scale=1.5), rand(G * H) if bias else None,
        None if lengths is None else torch.tensor(lengths),
        torch.zeros(T, B, H, dtype=dtype, requires_grad=True) if probe else None,
        reverse, parallel,
    )


CASES = [
    {},
    {"lengths": (7, 3, 1), "probe": True},
    {"lengths": (2, 7, 5), "reverse": True, "bias": False, "probe": True},
    {"reverse": True, "parallel": False, "probe": True},
    {"lengths": (4, 1, 7), "parallel": False},
]


def _case_id(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items()) or "plain"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("family", sorted(OPS))
@pytest.mark.parametrize("kw", CASES, ids=_case_id)
def test_op_matches_reference(family, kw, dtype):
    args = _args(family, dtype, **kw)
    x, h0, w_ih, b_ih, lengths, probe, reverse, _ = args
    y, h_n, _ = OPS[family](*args)
    g = torch.Generator().manual_seed(1)
    dy, dh_n = torch.randn(y.shape, generator=g), torch.randn(h_n.shape, generator=g)
    ((y * dy.to(dtype)).sum() + (h_n * dh_n.to(dtype)).sum()).backward()

    forward, backward = REFERENCE[family]
    numpy = {"x": x, "h0": h0, "w_ih": w_ih, "b_ih": b_ih}
    numpy = {k: None if v is None else v.detach().double().numpy() for k, v in numpy.items()}
    ref_y, ref_h, cache = forward(
        **numpy, lengths=None if lengths is None else lengths.numpy(), reverse=reverse
    )
    grads = backward(dy.numpy(), dh_n.numpy(), cache)
    assert_rel_close(y.detach(), torch.from_numpy(ref_y), OUT_TOL[dtype], "y")
    assert_rel_close(h_n.detach(), torch.from_numpy(ref_h), OUT_TOL[dtype], "h_n")
    for name, leaf in (("x", x), ("h0", h0), ("w_ih", w_ih), ("b_ih", b_ih), ("h", probe)):
        if leaf is not None:
            assert_rel_close(leaf.grad, torch.from_numpy(grads[name]), GRAD_TOL[dtype], name)
    if b_ih is None:
        assert grads["b_ih"] is None


@pytest.mark.parametrize("T", [1, 2, 5, 64, 1000])
def test_parallel_scan_equals_loop(T):
    """Every length class of the even-odd recursion (odd, even, power of two, one step)."""
    g = torch.Generator().manual_seed(T)
    a = torch.rand(T, 2, 3, generator=g, dtype=torch.float64)
    b, h0 = torch.randn(T, 2, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g)
    h0 = h0.double()
    loop = linear_scan(a, b, h0, parallel=False)
    by_hand = [h0]
    for t in range(T):
        by_hand.append(a[t] * by_hand[-1] + b[t])
    torch.testing.assert_close(loop, torch.stack(by_hand[1:]), rtol=0, atol=1e-14)
    torch.testing.assert_close(linear_scan(a, b, h0, parallel=True), loop, rtol=0, atol=1e-13)


@pytest.mark.parametrize("family, kw", [("mingru", CASES[1]), ("minlstm", CASES[2])])
def test_opcheck(family, kw):
    args = _args(family, torch.float32, **kw)
    torch.library.opcheck(OPS[family], args)
    y, h_n, u = (o.detach() for o in OPS[family](*args))
    x, h0, w_ih, _, lengths, probe, reverse, parallel = args
    bw_args = (torch.randn_like(y), torch.randn_like(h_n), x.detach(), h0.detach(),
               w_ih.detach(), y, u, lengths, reverse, parallel, probe is not None)
    for need_dx in (True, False):  # dx is empty when x needs no gradient
        torch.library.opcheck(BACKWARD_OPS[family], (*bw_args, need_dx))


@pytest.mark.parametrize("family", sorted(OPS))
def test_double_backward(family):
    args = _args(family, torch.float64, T=4, B=2, I=2, H=2, lengths=(4, 2), reverse=True)
    tensors = [a for a in args[:4]]

    def outputs(x, h0, w_ih, b_ih):
        y, h_n, _ = OPS[family](x, h0, w_ih, b_ih, *args[4:])
        return y, h_n

    assert torch.autograd.gradcheck(outputs, tensors)
    assert torch.autograd.gradgradcheck(outputs, tensors)


def test_minlstm_gates_that_underflow_stay_finite():
    """f and i both underflow in float32 (pre-activations ≈ -200): f' = σ(log f - log i)."""
    args = list(_args("minlstm", torch.float32, T=3, B=1, I=1, H=1, bias=True))
    with torch.no_grad():
        args[2].zero_()
        args[3].copy_(torch.tensor([-200.0, -201.0, 1.0]))
    _, h_n, _ = ops_min.minlstm(*args)
    f_norm = 1 / (1 + np.exp(-1.0))  # σ(log f - log i) = σ(1)
    want = args[1].detach()[0, 0].item()
    for _ in range(3):
        want = f_norm * want + (1 - f_norm) * 1.0
    assert abs(h_n.item() - want) < 1e-6

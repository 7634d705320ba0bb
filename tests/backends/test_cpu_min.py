"""The cpu backend's compiled min-cell recurrences against the NumPy reference, beyond
the conformance suite of tests/ops/test_min_ops.py: the batch split across two threads,
variable lengths in both directions with NaN in the padding (never read), the gradient
probe, gates far in their tails, and the same numbers whether or not ``parallel`` is
asked for. Each call is checked to reach the compiled kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import backends, ops_min, reference
from rnnlab.backends import cpu
from rnnlab.backends.cpu import _parallel
from rnnlab.backends.cpu import min as cpu_min

T, B, I, H = 9, 5, 3, 6
LENGTHS = [9, 4, 7, 1, 9]
OPS = {"mingru": ops_min.mingru, "minlstm": ops_min.minlstm}
REFERENCE = {
    "mingru": (reference.mingru_forward, reference.mingru_backward),
    "minlstm": (reference.minlstm_forward, reference.minlstm_backward),
}


@pytest.fixture
def two_threads(monkeypatch, split_in_two):
    """Two parts per call even at this size; yields the part counts the kernels ran with,
    and the number of calls of each compiled recurrence."""
    calls = {"parts": [], "_states": 0, "_adjoints": 0}
    real = _parallel.run_parts
    monkeypatch.setattr(cpu_min, "run_parts", lambda part, rows: (
        calls["parts"].append(len(rows)), real(part, rows))[1])
    for name in ("_states", "_adjoints"):
        compiled = getattr(cpu_min, name)

        def counted(*args, _compiled=compiled, _name=name):
            calls[_name] += 1
            return _compiled(*args)

        monkeypatch.setattr(cpu_min, name, counted)
    return calls


def test_the_cpu_backend_serves_its_compiled_min_kernels():
    assert isinstance(cpu.KERNELS.mingru, cpu_min.CpuMin)
    assert isinstance(cpu.KERNELS.minlstm, cpu_min.CpuMin)
    assert (cpu.KERNELS.mingru.family, cpu.KERNELS.minlstm.family) == ("mingru", "minlstm")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("family", sorted(OPS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("parallel", [True, False], ids=["scan", "loop"])
def test_min_kernels_split_across_threads_match_the_reference(
    family, reverse, parallel, dtype, two_threads
):
    G = {"mingru": 2, "minlstm": 3}[family]
    rs = np.random.default_rng(11)
    x, h0 = rs.normal(size=(T, B, I)), rs.normal(size=(B, H))
    w_ih, b_ih = rs.normal(size=(G * H, I)) * 1.5, rs.normal(size=G * H)
    dy, dh_n = rs.normal(size=(T, B, H)), rs.normal(size=(B, H))
    padding = np.arange(T)[:, None] >= np.array(LENGTHS)[None, :]
    x[padding] = np.nan  # never read
    forward, backward = REFERENCE[family]
    y_ref, h_ref, cache = forward(x, h0, w_ih, b_ih, lengths=np.array(LENGTHS), reverse=reverse)
    grads = backward(dy, dh_n, cache)

    leaves = {n: torch.tensor(v, dtype=dtype, requires_grad=True)
              for n, v in (("x", x), ("h0", h0), ("w_ih", w_ih), ("b_ih", b_ih))}
    probe = torch.zeros(T, B, H, dtype=dtype, requires_grad=True)
    dy_t = torch.tensor(dy, dtype=dtype)
    dy_t[torch.from_numpy(padding)] = torch.nan  # the padding's output gradient: never read
    with backends.use_backend("cpu"):
        y, h_n, _ = OPS[family](leaves["x"], leaves["h0"], leaves["w_ih"], leaves["b_ih"],
                                torch.tensor(LENGTHS), probe, reverse, parallel)
        ((y * dy_t).nan_to_num().sum() + (h_n * torch.tensor(dh_n, dtype=dtype)).sum()).backward()
    assert_rel_close(y.detach(), torch.from_numpy(y_ref), OUT_TOL[dtype], "y")
    assert_rel_close(h_n.detach(), torch.from_numpy(h_ref), OUT_TOL[dtype], "h_n")
    for name, leaf in (*leaves.items(), ("h", probe)):
        want = torch.from_numpy(np.nan_to_num(grads[name]))
        assert_rel_close(leaf.grad, want, GRAD_TOL[dtype], name)
    assert two_threads["parts"] and all(p == 2 for p in two_threads["parts"])
    assert two_threads["_states"] == 2 and two_threads["_adjoints"] == 2  # one per part


@pytest.mark.parametrize("family", sorted(OPS))
def test_gates_in_their_tails_stay_finite_and_exact(family):
    """Pre-activations of ±60 (σ at 1e-26 of 0 or 1; e^{60} overflows nothing in float64)
    and ±200 in float32, where e^{-u} leaves float32's range: the compiled gates stay finite
    and equal the torch-ops form."""
    for dtype, scale in ((torch.float64, 60.0), (torch.float32, 200.0)):
        G = {"mingru": 2, "minlstm": 3}[family]
        g = torch.Generator().manual_seed(3)
        x = torch.randn(T, B, I, generator=g, dtype=dtype)
        w = (scale * torch.sign(torch.randn(G * H, I, generator=g))).to(dtype)
        h0 = torch.randn(B, H, generator=g, dtype=dtype)
        out = {}
        for name in ("cpu", "portable"):
            leaves = [t.clone().requires_grad_() for t in (x, h0, w)]
            with backends.use_backend(name):
                y, h_n, _ = OPS[family](*leaves, None, None, None, False, False)
                (y.sum() + h_n.sum()).backward()
            out[name] = [y.detach(), h_n.detach(), *(t.grad for t in leaves)]
        for got, want in zip(out["cpu"], out["portable"], strict=True):
            assert torch.isfinite(got).all()
            assert_rel_close(got, want, 10 * GRAD_TOL[dtype], f"{family} {dtype}")

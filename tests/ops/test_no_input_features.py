"""Inputs of 0 features (I = 0, a GEMM with K = 0) on every backend: the same outputs and
gradients as one input feature of zeros (the cell then sees biases and state only).
The cells pass such inputs to the ops as they are."""

from __future__ import annotations

import pytest
import torch

import rnnlab
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import backends, ops

CASES = [
    pytest.param(name, dtype, id=f"{name}-{str(dtype)[6:]}")
    for name in sorted(rnnlab.available_backends())
    for dtype in (torch.float64, torch.float32)
    if backends.can_run(name, torch.device("cpu"), dtype)
]


def _call(family: str, x, h0, c0, w_ih, w_hh, b_ih, b_hh, infer: bool):
    if family == "lstm":
        if infer:
            return ops.lstm_infer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, None, False)
        return ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, None, None, False)[:3]
    op, infer_op = (ops.gru, ops.gru_infer) if family == "gru" else (ops.rnn, ops.rnn_infer)
    if infer:
        return infer_op(x, h0, w_ih, w_hh, b_ih, b_hh, None, False, True)
    return op(x, h0, w_ih, w_hh, b_ih, b_hh, None, None, False, True)[:2]


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(("backend", "dtype"), CASES)
def test_zero_input_features_equal_one_zero_feature(family, backend, dtype):
    T, B, H = 3, 5, 16  # H = 16: the cpu backend's register tiles in float32
    G = {"rnn": 1, "lstm": 4, "gru": 3}[family] * H
    g = torch.Generator().manual_seed(0)
    h0, c0 = (torch.randn(B, H, generator=g, dtype=dtype) for _ in range(2))
    w_hh = torch.randn(G, H, generator=g, dtype=dtype) * H**-0.5
    b_ih, b_hh = (torch.randn(G, generator=g, dtype=dtype) for _ in range(2))
    params = [w_hh, b_ih, b_hh]

    def run(I: int, infer: bool):
        x = torch.zeros(T, B, I, dtype=dtype)
        w_ih = torch.zeros(G, I, dtype=dtype)
        leaves = [p.detach().requires_grad_(not infer) for p in (h0, *params)]
        with rnnlab.use_backend(backend):
            out = _call(family, x, leaves[0], c0, w_ih, leaves[1], leaves[2], leaves[3], infer)
            if infer:
                return out, []
            sum(o.sum() for o in out).backward()
        return out, [p.grad for p in leaves]

    for infer in (False, True):
        want, want_grads = run(1, infer)
        got, got_grads = run(0, infer)
        for a, b in zip(got, want, strict=True):
            assert torch.isfinite(a).all()
            assert_rel_close(a, b, OUT_TOL[dtype], f"outputs (infer={infer})")
        for a, b in zip(got_grads, want_grads, strict=True):
            assert_rel_close(a, b, GRAD_TOL[dtype], "gradients")

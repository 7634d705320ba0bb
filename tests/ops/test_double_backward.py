"""Double backward through the ops: gradgradcheck of every family and argument on every
backend, the first-order gradients of a recorded backward against the backward ops, and
Hessian-vector products through rnnlab.nn layers and cells against torch.nn's."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
import rnnlab.nn as rnn
from helpers import GRAD_TOL, assert_rel_close, torch_rnn_blocked
from rnnlab import backends, ops
from rnnlab.backends import differentiable

T, B, I, H, P = 3, 2, 2, 2, 1
VARIANTS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "gru_reset_before"]
# Every pair of values of the four flags (lengths, reverse, bias, probe) in five rows.
FLAG_ROWS = [
    (False, False, False, False),
    (False, True, True, True),
    (True, False, True, True),
    (True, True, False, True),
    (True, True, True, False),
]


def _backends(dtype: torch.dtype) -> list[str]:
    """The installed backends that run ``dtype`` on CPU tensors here (the gpu backend
    joins with TRITON_INTERPRET=1, in tests/backends/gpu's interpreter jobs)."""
    cpu = torch.device("cpu")
    return [n for n in sorted(rnnlab.available_backends()) if backends.can_run(n, cpu, dtype)]


def _op_args(variant, *, lengths=True, reverse=True, bias=True, probe=True,
             dtype=torch.float64, seed=0):
    """(op, its positional arguments for small random inputs, number of differentiable
    outputs)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 0.6).to(dtype)

    family = variant.split("_")[0]
    out = P if variant == "lstm_proj" else H
    G = {"rnn": 1, "lstm": 4, "gru": 3}[family] * H
    x, h0, w_ih, w_hh = r(T, B, I), r(B, out), r(G, I), r(G, out)
    b_ih, b_hh = (r(G), r(G)) if bias else (None, None)
    lens = torch.tensor([2, T]) if lengths else None
    h_probe = r(T, B, out) if probe else None
    if family == "lstm":
        w_hr = r(P, H) if variant == "lstm_proj" else None
        args = (x, h0, r(B, H), w_ih, w_hh, b_ih, b_hh, w_hr, lens, h_probe, reverse)
        return ops.lstm, _requiring_grad(args), 3
    flag = variant in ("rnn_relu", "gru")  # relu, reset_after
    op = ops.rnn if family == "rnn" else ops.gru
    return op, _requiring_grad((x, h0, w_ih, w_hh, b_ih, b_hh, lens, h_probe, reverse, flag)), 2


def _requiring_grad(args: tuple) -> tuple:
    return tuple(
        a.requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
        for a in args
    )


def _row_id(row) -> str:
    names = [n for n, on in zip(("lengths", "reverse", "bias", "probe"), row, strict=True) if on]
    return "-".join(names) or "plain"


def _gradgradcheck(variant: str, fast_mode: bool, **flags) -> bool:
    op, args, n_out = _op_args(variant, **flags)

    def outputs(*a):
        return op(*a)[:n_out]

    return torch.autograd.gradgradcheck(
        outputs, args, eps=1e-6, atol=1e-7, rtol=1e-6, fast_mode=fast_mode
    )


@pytest.mark.parametrize("row", FLAG_ROWS, ids=_row_id)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("backend", _backends(torch.float64))
def test_gradgradcheck(backend, variant, row):
    """Second derivatives against central differences of the first, float64, along
    random directions (gradgradcheck's fast mode)."""
    lengths, reverse, bias, probe = row
    with rnnlab.use_backend(backend):
        assert _gradgradcheck(
            variant, True, lengths=lengths, reverse=reverse, bias=bias, probe=probe
        )


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradgradcheck_every_entry(variant):
    """Every entry of the second derivatives, all arguments present (the recomputation
    does not depend on the backend that ran the forward)."""
    with rnnlab.use_backend("portable"):
        assert _gradgradcheck(variant, False)


def _inputs_needing_grad(args: tuple) -> list[torch.Tensor]:
    return [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("backend", _backends(torch.float64))
def test_recorded_backward_gives_the_backward_ops_gradients(backend, variant):
    """With create_graph=True the first-order gradients (every input, the probe's total
    dL/dh_t included) are those of the hand-derived backward op, to float64 rounding."""
    op, args, n_out = _op_args(variant)
    inputs = _inputs_needing_grad(args)
    g = torch.Generator().manual_seed(4)
    with rnnlab.use_backend(backend):
        outs = op(*args)[:n_out]
        weights = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs]
        loss = sum((o * w).sum() for o, w in zip(outs, weights, strict=True))
        plain = torch.autograd.grad(loss, inputs, retain_graph=True)
        recorded = torch.autograd.grad(loss, inputs, create_graph=True)
    for k, (got, want) in enumerate(zip(recorded, plain, strict=True)):
        assert got.requires_grad, f"input {k}: the recorded gradient has no graph"
        assert_rel_close(got, want, GRAD_TOL[torch.float64], f"input {k}")


@pytest.mark.parametrize("variant", ["rnn_tanh", "lstm_proj", "gru_reset_before"])
def test_first_order_backward_never_recomputes(variant, monkeypatch):
    """Without create_graph the backward ops run alone: the recomputation is not called."""

    def refuse(*args):
        raise AssertionError("the differentiable recomputation ran in a first-order backward")

    for name in ("rnn_outputs", "lstm_outputs", "gru_outputs"):
        monkeypatch.setattr(differentiable, name, refuse)
    op, args, n_out = _op_args(variant)
    loss = sum(o.square().sum() for o in op(*args)[:n_out])
    assert all(g is not None for g in torch.autograd.grad(loss, _inputs_needing_grad(args)))


def _hessian_vector_product(loss_of, inputs: list[torch.Tensor], seed: int):
    """(gradient, Hessian · v) of ``loss_of()`` with respect to ``inputs``, v random."""
    g = torch.Generator().manual_seed(seed)
    vs = [torch.randn(i.shape, generator=g, dtype=torch.float64).to(i.dtype) for i in inputs]
    grads = torch.autograd.grad(loss_of(), inputs, create_graph=True)
    directional = sum((gr * v).sum() for gr, v in zip(grads, vs, strict=True))
    return grads, torch.autograd.grad(directional, inputs)


@pytest.mark.parametrize("backend", _backends(torch.float32))
def test_float32_hessian_vector_product_matches_float64(backend):
    """The double backward of a backend's ops in float32 (the gpu backend's dtype) against
    the same computation in float64 on the portable backend."""
    results = {}
    for name, dtype in ((backend, torch.float32), ("portable", torch.float64)):
        results[name, dtype] = {}
        for variant in VARIANTS:
            op, args, n_out = _op_args(variant, dtype=dtype)
            inputs = _inputs_needing_grad(args)

            def loss_of(op=op, args=args, n_out=n_out):
                return sum(o.tanh().square().sum() for o in op(*args)[:n_out])

            with rnnlab.use_backend(name):
                results[name, dtype][variant] = _hessian_vector_product(loss_of, inputs, 1)
    for variant in VARIANTS:
        got = results[backend, torch.float32][variant]
        want = results["portable", torch.float64][variant]
        for order, (gs, ws) in enumerate(zip(got, want, strict=True), start=1):
            for k, (a, b) in enumerate(zip(gs, ws, strict=True)):
                assert_rel_close(a, b, GRAD_TOL[torch.float32], f"{variant} order {order} #{k}")


def test_lstm_layer_hessian_vector_product_matches_torch_nn():
    """A gradient penalty's gradient through a 2-layer bidirectional LSTM on packed input,
    with the input and the initial state in the product: equal to torch.nn's, float64."""
    torch.manual_seed(0)
    ours = rnn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=torch.float64)
    theirs = torch.nn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])

    def loss_of(model):
        def loss():
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            out, (h_n, c_n) = model(packed, (h0, c0))
            return out.data.sin().sum() + h_n.square().sum() + (c_n * h_n).sum()

        return loss

    with torch_rnn_blocked():
        got = _hessian_vector_product(loss_of(ours), [x, h0, c0, *ours.parameters()], 2)
    want = _hessian_vector_product(loss_of(theirs), [x, h0, c0, *theirs.parameters()], 2)
    names = ["x", "h0", "c0", *(n for n, _ in ours.named_parameters())]
    for order, (gs, ws) in enumerate(zip(got, want, strict=True), start=1):
        for name, a, b in zip(names, gs, ws, strict=True):
            assert_rel_close(a, b, GRAD_TOL[torch.float64], f"order {order}: d{name}")


def test_cell_loop_hessian_vector_product_matches_torch_nn():
    """A GRUCell stepped in a loop: each call's state depends on the same weights, so a
    recorded backward must differentiate each call on its own (no path counted twice)."""
    torch.manual_seed(1)
    ours = rnn.GRUCell(2, 3, dtype=torch.float64)
    theirs = torch.nn.GRUCell(2, 3, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    xs = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)

    def loss_of(cell):
        def loss():
            h = None
            for x in xs:
                h = cell(x, h)
            return h.sin().sum()

        return loss

    with torch_rnn_blocked():
        got = _hessian_vector_product(loss_of(ours), [xs, *ours.parameters()], 3)
    want = _hessian_vector_product(loss_of(theirs), [xs, *theirs.parameters()], 3)
    for order, (gs, ws) in enumerate(zip(got, want, strict=True), start=1):
        for k, (a, b) in enumerate(zip(gs, ws, strict=True)):
            assert_rel_close(a, b, GRAD_TOL[torch.float64], f"order {order} #{k}")

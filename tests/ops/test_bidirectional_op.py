"""``rnnlab::rnn_bidirectional``: both directions of an RNN layer in one op.

Held against ``rnnlab::rnn`` called once per direction (itself held against the NumPy
reference and torch.nn elsewhere): outputs, final states and every gradient, on every
backend and dtype, with and without lengths, bias, probes, packed rows, and an x that
needs no gradient; torch.library.opcheck of both ops; gradgradcheck; the layers' use of
it; and the training-step memory it exists for, against torch.nn's.
"""

from __future__ import annotations

import json

import pytest
import torch

import rnnlab
import rnnlab.nn as rnn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close, backend_cases
from rnnlab import ops, ops_bidirectional
from rnnlab.ops_bidirectional import rnn_bidirectional, rnn_bidirectional_backward

T, B, I, H = 6, 3, 4, 5
CASES = [  # (lengths, bias, probe, relu, x needs a gradient)
    (False, True, False, False, True),
    (True, True, True, False, True),
    (True, False, False, True, True),
    (True, True, False, False, False),
]


def _inputs(dtype, *, lengths, bias, probe, x_grad, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, grad=True):
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 0.5).to(
            dtype).requires_grad_(grad)

    x = r(T, B, I, grad=x_grad)
    lens = torch.tensor([T, 4, 2]) if lengths else None
    directions = [
        [r(B, H), r(H, I), r(H, H), r(H) if bias else None, r(H) if bias else None,
         r(T, B, H) if probe else None]
        for _ in range(2)
    ]
    return x, lens, directions


def _as_two_ops(x, lens, directions, relu):
    """y (T, B, 2H), h_n, h_n_reverse from rnnlab::rnn, one call per direction."""
    ys, finals = [], []
    for reverse, (h0, w_ih, w_hh, b_ih, b_hh, probe) in enumerate(directions):
        y, h_n, _ = ops.rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lens, probe, bool(reverse), relu)
        ys.append(y)
        finals.append(h_n)
    return torch.cat(ys, dim=-1), *finals


def _as_one_op(x, lens, directions, relu):
    y, h_n, _, h_n_reverse, _ = rnn_bidirectional(x, *directions[0], *directions[1], lens,
                                                  relu)
    return y, h_n, h_n_reverse


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(
    n for n, on in zip(("lengths", "bias", "probe", "relu", "dx"), c, strict=True) if on))
@pytest.mark.parametrize(("backend", "dtype"), backend_cases())
def test_equals_one_op_per_direction(backend, dtype, case):
    lengths, bias, probe, relu, x_grad = case
    x, lens, directions = _inputs(dtype, lengths=lengths, bias=bias, probe=probe,
                                  x_grad=x_grad)
    leaves = [t for t in (x, *(t for d in directions for t in d)) if t is not None
              and t.requires_grad]
    with rnnlab.use_backend(backend):
        want = _as_two_ops(x, lens, directions, relu)
        got = _as_one_op(x, lens, directions, relu)
        g = torch.Generator().manual_seed(7)
        seeds = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(dtype) for t in want]
        want_grads = torch.autograd.grad(want, leaves, seeds)
        got_grads = torch.autograd.grad(got, leaves, seeds)
    for name, a, b in zip(("y", "h_n", "h_n_reverse"), got, want, strict=True):
        assert_rel_close(a, b, OUT_TOL[dtype], name)
    for k, (a, b) in enumerate(zip(got_grads, want_grads, strict=True)):
        assert_rel_close(a, b, GRAD_TOL[dtype], f"gradient {k}")


@pytest.mark.parametrize(("backend", "dtype"), backend_cases())
def test_packed_rows_equal_one_op_per_direction(backend, dtype):
    x, lens, directions = _inputs(dtype, lengths=True, bias=True, probe=False, x_grad=True)
    rows = torch.nn.utils.rnn.pack_padded_sequence(x, lens).data  # (N, I), longest first
    leaves = [rows, *(t for d in directions for t in d if t is not None)]
    with rnnlab.use_backend(backend):
        want = _as_two_ops(rows, lens, directions, False)
        got = _as_one_op(rows, lens, directions, False)
        assert got[0].shape == (rows.shape[0], 2 * H)
        seeds = [torch.ones_like(t) for t in want]
        pairs = zip(torch.autograd.grad(got, leaves, seeds),
                    torch.autograd.grad(want, leaves, seeds), strict=True)
    for k, (a, b) in enumerate(pairs):
        assert_rel_close(a, b, GRAD_TOL[dtype], f"gradient {k}")


@pytest.mark.parametrize("probe", [False, True], ids=["", "probe"])
def test_opcheck(probe):
    x, lens, directions = _inputs(torch.float32, lengths=True, bias=True, probe=probe,
                                  x_grad=True)
    args = (x, *directions[0], *directions[1], lens, False)
    torch.library.opcheck(rnn_bidirectional, args)
    y, h_n, _, h_n_reverse, _ = rnn_bidirectional(*args)
    dy = torch.randn(*y.shape[:-1], 2 * H + 3)[..., : 2 * H]  # as autograd may give it
    weights = [t.detach() if t is not None else None
               for d in directions for t in (*d[:3], d[5])]  # h0, w_ih, w_hh, probe
    backward = (dy, torch.randn_like(h_n), torch.randn_like(h_n_reverse), x.detach(),
                *weights, y.detach(), lens, False, probe, True)
    torch.library.opcheck(rnn_bidirectional_backward, backward)


def test_gradgradcheck():
    x, lens, directions = _inputs(torch.float64, lengths=True, bias=True, probe=True,
                                  x_grad=True)
    own = [t for d in directions for t in d]

    def outputs(x, *own):
        return _as_one_op(x, lens, [list(own[:6]), list(own[6:])], True)

    torch.autograd.gradgradcheck(outputs, (x, *own))


def _count_calls(monkeypatch) -> dict[str, int]:
    """Counts of the layers' calls of the paired op and of the one-direction op."""
    calls = {"paired": 0, "one": 0}

    def counted(name, real):
        def call(*args):
            calls[name] += 1
            return real(*args)

        return call

    monkeypatch.setattr(ops_bidirectional, "rnn_bidirectional",
                        counted("paired", ops_bidirectional.rnn_bidirectional))
    monkeypatch.setattr(ops, "rnn", counted("one", ops.rnn))
    return calls


def test_layers_pair_the_directions_of_layers_whose_input_needs_a_gradient(monkeypatch):
    calls = _count_calls(monkeypatch)
    layer = rnn.RNN(I, H, num_layers=3, bidirectional=True)
    x = torch.randn(T, B, I)
    y, _ = layer(x)  # layer 0: x needs no gradient, two ops; layers 1-2 paired
    assert calls == {"paired": 2, "one": 2}
    y.sum().backward()
    layer(x.requires_grad_(True))
    assert calls == {"paired": 5, "one": 2}
    with torch.no_grad():
        layer(x)  # the inference ops
    assert calls == {"paired": 5, "one": 2}
    gru = rnn.GRU(I, H, num_layers=2, bidirectional=True)
    gru(x)  # not the GRU (module docstring: its saved gates make one op cost memory)
    assert calls == {"paired": 5, "one": 2}


def test_layers_record_both_directions_of_a_paired_layer():
    layer = rnn.RNN(I, H, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I)
    with rnn.record(layer) as rec:
        y, _ = layer(x)
        y.sum().backward()
    assert len(rec.gates) == 4
    for gates in rec.gates.values():
        assert gates["a"].shape == (T, B, H)


def _tensor_peak(layer: torch.nn.Module, x: torch.Tensor, folder) -> int:
    """Peak bytes held in tensors over one training step (after one unmeasured step):
    the allocations and frees of torch's CPU allocator that the profiler records, summed
    in time order — what ``benchmarks/cpu_speed.py`` reports as training-step memory."""

    def step():
        layer.zero_grad(set_to_none=True)
        out, _ = layer(x)
        out.sum().backward()

    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        step()
    trace = folder / f"{type(layer).__module__}.json"
    prof.export_chrome_trace(str(trace))
    events = [e for e in json.loads(trace.read_text())["traceEvents"]
              if e.get("name") == "[memory]"]
    held = peak = 0
    for e in sorted(events, key=lambda e: e["ts"]):
        held += e["args"]["Bytes"]
        peak = max(peak, held)
    return peak


def test_two_layer_bidirectional_training_step_peaks_below_torch_nn(tmp_path):
    """What the op is for: a training step of a 2-layer bidirectional RNN holds no more
    tensor bytes at its peak than torch.nn's (with one op per direction, at the
    benchmark's B = 8, T = 200, H = 128, it held 12 % more:
    benchmarks/results/cpu-avx2-memory-bidirectional.md)."""
    torch.manual_seed(0)
    theirs = torch.nn.RNN(16, 64, num_layers=2, bidirectional=True)
    ours = rnn.RNN(16, 64, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(100, 8, 16)
    with rnnlab.use_backend("cpu"):
        mine = _tensor_peak(ours, x, tmp_path)
    assert mine <= _tensor_peak(theirs, x, tmp_path)

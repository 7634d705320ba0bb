"""Input forms and sizes torch.nn accepts: unbatched input (the ``no_batch_dim``
references of ``module_inputs_torch_nn_RNN_GRU``/``LSTM``/cells), packed input, an empty
batch (``test_RNN_input_size_zero``), zero initial states (``test_rnn_initial_hidden_state``,
``test_projections_lstm_initial_hidden_state``), non-contiguous tensors, and cells run in a
loop with a backward (``test_RNN_cell``, ``test_LSTM_cell``,
``test_lstmcell_backward_only_one_output_grad``, ``_test_rnn_retain_variables``)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from helpers import OUT_TOL, assert_rel_close

F64 = torch.float64
TOL = OUT_TOL[F64]


def _layer_configs():
    for bias, batch_first, bidirectional in itertools.product([False, True], repeat=3):
        common = dict(input_size=2, num_layers=2, bias=bias, batch_first=batch_first,
                      bidirectional=bidirectional)
        for nonlinearity in ("tanh", "relu"):
            yield "RNN", dict(common, hidden_size=3, nonlinearity=nonlinearity)
        yield "GRU", dict(common, hidden_size=3)
        for proj_size in (0, 2):
            yield "LSTM", dict(common, hidden_size=3, proj_size=proj_size)


def _states(layer, kwargs, batch: tuple[int, ...]):
    D = 2 if kwargs["bidirectional"] else 1
    P = kwargs.get("proj_size", 0) or kwargs["hidden_size"]
    h = torch.randn(2 * D, *batch, P, dtype=F64)
    if layer != "LSTM":
        return h
    return h, torch.randn(2 * D, *batch, kwargs["hidden_size"], dtype=F64)


def _flat(out) -> tuple[torch.Tensor, ...]:
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def _assert_close(actual, expected):
    if isinstance(expected, torch.Tensor):
        assert_rel_close(actual, expected, TOL)
    else:
        for a, e in zip(actual, expected, strict=True):
            _assert_close(a, e)


@pytest.mark.parametrize(("layer", "kwargs"), list(_layer_configs()))
def test_unbatched_is_a_batch_of_one(impl, layer, kwargs):
    model = getattr(impl, layer)(**kwargs, dtype=F64)
    x = torch.randn(3, 2, dtype=F64)
    hx = _states(layer, kwargs, ())
    batch_dim = 0 if kwargs["batch_first"] else 1
    for state in (None, hx):
        out, h = model(x, state)
        if state is None:
            batched_state = None
        elif layer == "LSTM":
            batched_state = tuple(s.unsqueeze(1) for s in state)
        else:
            batched_state = state.unsqueeze(1)
        ref_out, ref_h = model(x.unsqueeze(batch_dim), batched_state)
        _assert_close(out, ref_out.squeeze(batch_dim))
        ref_h = tuple(s.squeeze(1) for s in ref_h) if layer == "LSTM" else ref_h.squeeze(1)
        _assert_close(h, ref_h)


@pytest.mark.parametrize("cell", ["RNNCell", "GRUCell", "LSTMCell"])
def test_unbatched_cell_is_a_batch_of_one(impl, cell):
    for kwargs in ([{}, {"nonlinearity": "relu"}] if cell == "RNNCell" else [{}]):
        module = getattr(impl, cell)(5, 10, **kwargs, dtype=F64)
        x, h, c = (torch.randn(n, dtype=F64) for n in (5, 10, 10))
        hx = (h, c) if cell == "LSTMCell" else h
        batched = (h[None], c[None]) if cell == "LSTMCell" else h[None]
        out, ref = module(x, hx), module(x[None], batched)
        _assert_close(out, tuple(r[0] for r in ref) if cell == "LSTMCell" else ref[0])


@pytest.mark.parametrize("layer", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_packed_is_each_sequence_alone(impl, layer, enforce_sorted):
    """Outputs and final states of a packed batch, in the caller's batch order (the initial
    state too, also when packing sorted the batch), are those of each sequence alone."""
    kwargs = dict(num_layers=2, bidirectional=True)
    model = getattr(impl, layer)(2, 3, **kwargs, dtype=F64)
    lengths = [5, 3, 3, 2, 1] if enforce_sorted else [3, 5, 1, 3, 2]
    padded = torch.randn(5, 5, 2, dtype=F64)
    packed = pack_padded_sequence(padded, lengths, enforce_sorted=enforce_sorted)
    hx = _states(layer, dict(kwargs, hidden_size=3), (5,))
    out, h = model(packed, hx)
    assert isinstance(out, PackedSequence)
    assert torch.equal(out.batch_sizes, packed.batch_sizes)
    for name in ("sorted_indices", "unsorted_indices"):
        ours, theirs = getattr(out, name), getattr(packed, name)
        assert (ours is None and theirs is None) or torch.equal(ours, theirs), name
    out, out_lengths = pad_packed_sequence(out)
    assert out_lengths.tolist() == lengths
    for b, n in enumerate(lengths):
        state = tuple(s[:, b] for s in hx) if layer == "LSTM" else hx[:, b]
        alone, h_alone = model(padded[:n, b], state)
        _assert_close(out[:n, b], alone)
        assert torch.all(out[n:, b] == 0)
        final = tuple(s[:, b] for s in h) if layer == "LSTM" else h[:, b]
        _assert_close(final, h_alone)


@pytest.mark.parametrize("layer", ["RNN", "GRU", "LSTM"])
def test_empty_batch(impl, layer):
    """A batch of 0 sequences: empty outputs and states of the right shapes, and a backward
    that gives the input and every parameter a gradient of zeros."""
    kwargs = dict(num_layers=2, bidirectional=True) | ({"proj_size": 2} if layer == "LSTM" else {})
    model = getattr(impl, layer)(3, 4, **kwargs)
    for batch_first in (False, True):
        model.batch_first = batch_first
        x = torch.zeros((0, 5, 3) if batch_first else (5, 0, 3), requires_grad=True)
        out, h = model(x)
        features = 2 * (2 if layer == "LSTM" else 4)  # both directions' h (LSTM: projected)
        assert out.shape == ((0, 5, features) if batch_first else (5, 0, features))
        if layer == "LSTM":
            assert h[0].shape == (4, 0, 2) and h[1].shape == (4, 0, 4)
        else:
            assert h.shape == (4, 0, 4)
        model.zero_grad()
        out.sum().backward()
        assert x.grad.shape == x.shape
        for name, p in model.named_parameters():
            assert p.grad is not None and not p.grad.any(), name


@pytest.mark.parametrize("cell", ["RNNCell", "GRUCell", "LSTMCell"])
def test_cell_empty_batch(impl, cell):
    module = getattr(impl, cell)(3, 4)
    x = torch.zeros(0, 3, requires_grad=True)
    out = module(x)
    out = out if cell != "LSTMCell" else out[0] + out[1]
    assert out.shape == (0, 4)
    out.sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in module.parameters())


@pytest.mark.parametrize("cell", ["RNNCell", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_cell_without_input_features(impl, cell, dtype):
    """input_size 0: the step depends on the state alone (same function as a cell whose
    input weights are zero)."""
    module = getattr(impl, cell)(0, 16, dtype=dtype)
    twin = getattr(torch.nn, cell)(1, 16, dtype=dtype)
    with torch.no_grad():
        twin.weight_ih.zero_()
        for name in ("weight_hh", "bias_ih", "bias_hh"):
            getattr(twin, name).copy_(getattr(module, name))
    h = torch.randn(5, 16, dtype=dtype)
    hx = (h, h.flip(0)) if cell == "LSTMCell" else h
    out = _flat(module(torch.zeros(5, 0, dtype=dtype), hx))
    for a, b in zip(out, _flat(twin(torch.randn(5, 1, dtype=dtype), hx)), strict=True):
        assert_rel_close(a, b, OUT_TOL[dtype])


@pytest.mark.parametrize(("layer", "proj_size"), [("RNN", 0), ("GRU", 0), ("LSTM", 0),
                                                  ("LSTM", 3)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_zero_initial_state_is_no_state(impl, layer, bidirectional, proj_size):
    kwargs = {"proj_size": proj_size} if proj_size else {}
    model = getattr(impl, layer)(6, 5, 2, bidirectional=bidirectional, **kwargs)
    D = 2 if bidirectional else 1
    x = torch.randn(4, 3, 6)
    h = torch.zeros(2 * D, 3, proj_size or 5)
    hx = (h, torch.zeros(2 * D, 3, 5)) if layer == "LSTM" else h
    out1, h1 = model(x, hx)
    out2, h2 = model(x)
    assert torch.equal(out1, out2)
    _assert_close(h1, h2)


@pytest.mark.parametrize("layer", ["RNN", "GRU", "LSTM"])
def test_non_contiguous_tensors(impl, layer):
    model = getattr(impl, layer)(3, 4, 2, bidirectional=True, dtype=F64)
    x = torch.randn(3, 5, 2, dtype=F64).transpose(0, 2)        # (2, 5, 3), not contiguous
    h = torch.randn(4, 4, 5, dtype=F64).transpose(1, 2)        # (4, 5, 4)
    hx = (h, h.flip(0)) if layer == "LSTM" else h
    assert not x.is_contiguous() and not h.is_contiguous()
    contiguous = (h.contiguous(), h.flip(0).contiguous()) if layer == "LSTM" else h.contiguous()
    _assert_close(model(x, hx), model(x.contiguous(), contiguous))


@pytest.mark.parametrize("bias", [True, False])
def test_cells_in_a_loop(impl, bias):
    x = torch.randn(3, 10)
    for cell in (impl.RNNCell, impl.GRUCell):
        module = cell(10, 20, bias=bias)
        hx = torch.randn(3, 20)
        for _ in range(6):
            hx = module(x, hx)
        hx.sum().backward()
        assert all(p.grad is not None for p in module.parameters())
    module = impl.LSTMCell(10, 20, bias=bias)
    hx, cx = torch.randn(3, 20), torch.randn(3, 20)
    for _ in range(6):
        hx, cx = module(x, (hx, cx))
    (hx + cx).sum().backward()
    assert all(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_backward_from_one_output(impl, bias):
    module = impl.LSTMCell(2, 3, bias=bias, dtype=F64)
    for index in range(2):
        s = torch.randn(1, 2, dtype=F64, requires_grad=True)
        module(s)[index].sum().backward()
        assert s.grad is not None and s.grad.abs().sum().item() > 0


@pytest.mark.parametrize("layer", ["RNN", "GRU", "LSTM"])
def test_backward_twice_through_a_retained_graph(impl, layer):
    model = getattr(impl, layer)(10, 20, num_layers=2)
    x = torch.randn(5, 6, 10, requires_grad=True)
    output = model(x)
    output[0].sum().backward(retain_graph=True)
    first = [x.grad.clone()] + [p.grad.clone() for p in model.parameters()]
    for _ in range(3):
        model.zero_grad()
        x.grad.zero_()
        output[0].sum().backward(retain_graph=True)
        again = [x.grad] + [p.grad for p in model.parameters()]
        assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_lstm_state_as_a_list(impl):
    model = impl.LSTM(3, 4, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    h, c = torch.randn(1, 2, 4, dtype=F64), torch.randn(1, 2, 4, dtype=F64)
    _assert_close(model(x, [h, c]), model(x, (h, c)))

"""rnnlab.nn.Stream: stepping a layer (one step or a chunk at a time, state carried)
equals running the sequence layer over everything fed so far, on every backend's
streaming entry point (the gpu one joins only with TRITON_INTERPRET=1: it runs in
tests/backends/gpu/test_interpreter.py, under Triton's interpreter, with ``-k gpu``)."""

from __future__ import annotations

import pytest
import torch

import rnnlab
import rnnlab.nn as rnn
from helpers import OUT_TOL, assert_rel_close
from rnnlab import backends

LAYERS = {
    "rnn_tanh": lambda **kw: rnn.RNN(5, 7, **kw),
    "rnn_relu": lambda **kw: rnn.RNN(5, 7, nonlinearity="relu", **kw),
    "lstm": lambda **kw: rnn.LSTM(5, 7, **kw),
    "lstm_proj": lambda **kw: rnn.LSTM(5, 7, proj_size=3, **kw),
    "gru": lambda **kw: rnn.GRU(5, 7, **kw),
    "gru_reset_before": lambda **kw: rnn.GRU(5, 7, reset_after=False, **kw),
}


def _states(state):
    return list(state) if isinstance(state, tuple) else [state]


# Every installed backend in every dtype it runs on CPU tensors here: cases that cannot run
# are not generated (rather than skipped), so the skip count stays honest.
CASES = [
    pytest.param(dtype, name, id=f"{key}-{name}")
    for key, dtype in {"f64": torch.float64, "f32": torch.float32}.items()
    for name in sorted(rnnlab.available_backends())
    if backends.can_run(name, torch.device("cpu"), dtype)
]


@pytest.mark.parametrize(("dtype", "backend"), CASES)
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_stream_equals_the_sequence_layer(kind, dtype, backend):
    torch.manual_seed(0)
    layer = LAYERS[kind](num_layers=3, bias=kind != "gru", dtype=dtype)
    x = torch.randn(11, 5, dtype=dtype)
    family = layer.family
    P = layer.proj_size or 7
    h0 = torch.randn(3, P, dtype=dtype)
    state = (h0, torch.randn(3, 7, dtype=dtype)) if family == "lstm" else h0
    with torch.no_grad():
        out, final = layer(x, state)
    with rnnlab.use_backend(backend):
        stream = rnn.Stream(layer, state)
    pieces = [stream.step(x[0]), stream.step(x[1:4]), stream.step(x[4]), stream.step(x[5:])]
    got = torch.cat([pieces[0][None], pieces[1], pieces[2][None], pieces[3]])
    tol = OUT_TOL[dtype]
    assert got.dtype == dtype and got.shape == out.shape
    assert_rel_close(got, out, tol, "outputs")
    for a, b in zip(_states(stream.state), _states(final), strict=True):
        assert_rel_close(a, b, tol, "carried state")


def test_reset_reload_and_the_returned_state_is_a_copy():
    torch.manual_seed(1)
    layer = rnn.LSTM(4, 6, num_layers=2)
    x = torch.randn(5, 4)
    stream = rnn.Stream(layer)
    first = stream.step(x)
    h, _ = stream.state
    h.add_(1.0)  # the copy, not the stream's state
    stream.reset()
    assert torch.equal(stream.step(x), first)
    with torch.no_grad():
        layer.weight_hh_l1.mul_(-1)
    stream.reset()
    assert torch.equal(stream.step(x), first)  # weights were copied at creation
    stream.reload()
    stream.reset()
    with torch.no_grad():
        expected, _ = layer(x)
    assert_rel_close(stream.step(x), expected, 1e-5, "after reload")


def test_the_backend_is_chosen_by_the_registry_and_dropout_is_off(monkeypatch):
    torch.manual_seed(2)
    layer = rnn.GRU(3, 4, num_layers=2, dropout=0.5)  # training mode: dropout must not apply
    x = torch.randn(6, 3)
    compiled = rnn.Stream(layer).step(x)
    monkeypatch.setenv(backends.ENV_VAR, "portable")
    opened = []
    real = backends.select
    monkeypatch.setattr(backends, "select", lambda *a: opened.append(real(*a).name) or real(*a))
    slow = rnn.Stream(layer)
    got = torch.cat([slow.step(x[:2]), slow.step(x[2])[None], slow.step(x[3:])])
    assert opened == ["portable"]
    assert layer.training
    assert_rel_close(got, compiled, 1e-5, "portable vs cpu")


def test_bad_layers_and_inputs_are_precise_errors():
    with pytest.raises(ValueError, match="bidirectional"):
        rnn.Stream(rnn.LSTM(3, 4, bidirectional=True))
    with pytest.raises(TypeError, match=r"rnnlab\.nn RNN, LSTM or GRU"):
        rnn.Stream(torch.nn.LSTM(3, 4))
    stream = rnn.Stream(rnn.RNN(3, 4))
    with pytest.raises(ValueError, match=r"input_size = 3, got shape \(5,\)"):
        stream.step(torch.randn(5))
    with pytest.raises(ValueError, match=r"got shape \(1, 2, 3\)"):
        stream.step(torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match=r"needs a torch\.float32 tensor"):
        stream.step(torch.randn(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"state h must have shape \(1, 4\)"):
        rnn.Stream(rnn.RNN(3, 4), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="tuple"):
        rnn.Stream(rnn.LSTM(3, 4), torch.zeros(1, 4))

"""Weight converters, each checked against that layout's own equations.

Every foreign layout gets a small NumPy forward pass written here from the layout's
documented equations (not from the converter): the converted weights run through it must
reproduce the rnnlab layer's outputs, and converting back must give the same function
(bit-identical weights where the layout keeps torch's two biases).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnlab.export import (
    from_char_rnn,
    from_haste,
    from_keras,
    from_onnx_weights,
    from_torch_nn,
    to_char_rnn,
    to_haste,
    to_keras,
    to_onnx_weights,
    to_torch_nn,
)
from rnnlab.nn import GRU, LSTM, RNN

I, H, T, B = 3, 5, 6, 2
TOL = 1e-5  # float32 weights, float64 NumPy arithmetic


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def f64(array):
    return np.asarray(array, dtype=np.float64)


# --------------------------------------------------------------------------- the layouts'
# equations, one direction, x (T, B, I) -> y (T, B, H)


def keras_lstm(x, kernel, recurrent_kernel, bias):
    h, c = np.zeros((B, H)), np.zeros((B, H))
    ys = []
    for x_t in x:
        z = x_t @ kernel + h @ recurrent_kernel + bias
        i, f, c_bar, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(c_bar)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys)


def keras_gru(x, kernel, recurrent_kernel, bias, reset_after):
    h = np.zeros((B, H))
    ys = []
    for x_t in x:
        if reset_after:  # bias (2, 3H): input bias, recurrent bias
            x_z, x_r, x_h = np.split(x_t @ kernel + bias[0], 3, axis=1)
            h_z, h_r, h_h = np.split(h @ recurrent_kernel + bias[1], 3, axis=1)
            z, r = sigmoid(x_z + h_z), sigmoid(x_r + h_r)
            hh = np.tanh(x_h + r * h_h)
        else:  # one bias (3H,), reset applied to h before the recurrent matmul
            x_z, x_r, x_h = np.split(x_t @ kernel + bias, 3, axis=1)
            u_z, u_r, u_h = np.split(recurrent_kernel, 3, axis=1)
            z, r = sigmoid(x_z + h @ u_z), sigmoid(x_r + h @ u_r)
            hh = np.tanh(x_h + (r * h) @ u_h)
        h = z * h + (1 - z) * hh
        ys.append(h)
    return np.stack(ys)


def keras_simple_rnn(x, kernel, recurrent_kernel, bias, activation):
    act = np.tanh if activation == "tanh" else (lambda a: np.maximum(a, 0))
    h = np.zeros((B, H))
    ys = []
    for x_t in x:
        h = act(x_t @ kernel + h @ recurrent_kernel + bias)
        ys.append(h)
    return np.stack(ys)


def onnx_lstm(x, W, R, B_, d):
    """ONNX LSTM, direction d of (W, R, B): gates i, o, f, c; B = [Wb, Rb]."""
    Wb, Rb = np.split(B_[d], 2)
    h, c = np.zeros((B, H)), np.zeros((B, H))
    ys = []
    for x_t in x:
        gates = x_t @ W[d].T + h @ R[d].T + Wb + Rb
        i, o, f, c_bar = np.split(gates, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(c_bar)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys)


def onnx_gru(x, W, R, B_, d, linear_before_reset):
    """ONNX GRU, direction d: gates z, r, h; B = [Wb, Rb]."""
    Wz, Wr, Wh = np.split(W[d], 3)
    Rz, Rr, Rh = np.split(R[d], 3)
    Wbz, Wbr, Wbh, Rbz, Rbr, Rbh = np.split(B_[d], 6)
    h = np.zeros((B, H))
    ys = []
    for x_t in x:
        z = sigmoid(x_t @ Wz.T + h @ Rz.T + Wbz + Rbz)
        r = sigmoid(x_t @ Wr.T + h @ Rr.T + Wbr + Rbr)
        if linear_before_reset:
            hh = np.tanh(x_t @ Wh.T + r * (h @ Rh.T + Rbh) + Wbh)
        else:
            hh = np.tanh(x_t @ Wh.T + (r * h) @ Rh.T + Rbh + Wbh)
        h = (1 - z) * hh + z * h
        ys.append(h)
    return np.stack(ys)


def onnx_rnn(x, W, R, B_, d, activation):
    act = np.tanh if activation == "tanh" else (lambda a: np.maximum(a, 0))
    Wb, Rb = np.split(B_[d], 2)
    h = np.zeros((B, H))
    ys = []
    for x_t in x:
        h = act(x_t @ W[d].T + h @ R[d].T + Wb + Rb)
        ys.append(h)
    return np.stack(ys)


def haste_lstm(x, kernel, recurrent_kernel, bias):
    """Haste LSTM: v = h·R + x·K + b, chunks i, g, f, o."""
    h, c = np.zeros((B, H)), np.zeros((B, H))
    ys = []
    for x_t in x:
        v = h @ recurrent_kernel + x_t @ kernel + bias
        i, g, f, o = np.split(v, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys)


def haste_gru(x, kernel, recurrent_kernel, bias, recurrent_bias):
    """Haste GRU: chunks z, r, g; the reset gate scales the recurrent term after the matmul."""
    h = np.zeros((B, H))
    ys = []
    for x_t in x:
        vx = np.split(x_t @ kernel + bias, 3, axis=1)
        vh = np.split(h @ recurrent_kernel + recurrent_bias, 3, axis=1)
        z = sigmoid(vx[0] + vh[0])
        r = sigmoid(vx[1] + vh[1])
        g = np.tanh(vx[2] + r * vh[2])
        h = z * h + (1 - z) * g
        ys.append(h)
    return np.stack(ys)


def char_rnn_lstm(x, i2h_w, i2h_b, h2h_w, h2h_b):
    """char-rnn LSTM.lua: all_input_sums = i2h(x) + h2h(h), split n1..n4 = i, f, o, g."""
    h, c = np.zeros((B, H)), np.zeros((B, H))
    ys = []
    for x_t in x:
        sums = x_t @ i2h_w.T + i2h_b + h @ h2h_w.T + h2h_b
        n1, n2, n3, n4 = np.split(sums, 4, axis=1)
        c = sigmoid(n2) * c + sigmoid(n1) * np.tanh(n4)
        h = sigmoid(n3) * np.tanh(c)
        ys.append(h)
    return np.stack(ys)


# --------------------------------------------------------------------------- helpers


def _layer(cls, seed=0, **kwargs):
    torch.manual_seed(seed)
    layer = cls(I, H, **kwargs)
    with torch.no_grad():  # non-trivial biases in both slots
        for name, param in layer.named_parameters():
            if name.startswith("bias"):
                param.uniform_(-1, 1)
    return layer.eval()


def _run(layer, x):
    """Outputs of each direction of a one-layer rnnlab layer: [forward, reverse?]."""
    with torch.no_grad():
        y, _ = layer(torch.as_tensor(x, dtype=torch.float32))
    return np.split(y.numpy().astype(np.float64), layer.num_directions, axis=2)


def _x(seed=1):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(np.float32)


def _assert_same_weights(a, b):
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        np.testing.assert_array_equal(pa.detach().numpy(), pb.detach().numpy(), err_msg=name)


def _assert_same_function(a, b, x):
    for ya, yb in zip(_run(a, x), _run(b, x), strict=True):
        np.testing.assert_allclose(ya, yb, rtol=TOL, atol=TOL)


def _fresh_like(layer, cls, **kwargs):
    """Same configuration, different (random) weights."""
    return _layer(cls, seed=99, **kwargs)


# --------------------------------------------------------------------------- Keras


@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_lstm(bidirectional):
    layer = _layer(LSTM, bidirectional=bidirectional)
    x = _x()
    weights = to_keras(layer)
    assert [list(w) for w in weights] == [["kernel", "recurrent_kernel", "bias"]] * (
        2 if bidirectional else 1)
    assert weights[0]["kernel"].shape == (I, 4 * H) and weights[0]["bias"].shape == (4 * H,)
    ys = _run(layer, x)
    np.testing.assert_allclose(keras_lstm(f64(x), *map(f64, weights[0].values())), ys[0],
                               rtol=TOL, atol=TOL)
    if bidirectional:  # the reverse direction is the same equations on the flipped input
        back = keras_lstm(f64(x[::-1]), *map(f64, weights[1].values()))[::-1]
        np.testing.assert_allclose(back, ys[1], rtol=TOL, atol=TOL)
    loaded = from_keras(_fresh_like(layer, LSTM, bidirectional=bidirectional), weights)
    _assert_same_function(layer, loaded, x)


@pytest.mark.parametrize("reset_after", [True, False])
def test_keras_gru(reset_after):
    layer = _layer(GRU, reset_after=reset_after)
    x = _x()
    (weights,) = to_keras(layer)
    assert weights["bias"].shape == ((2, 3 * H) if reset_after else (3 * H,))
    want = keras_gru(f64(x), *map(f64, weights.values()), reset_after=reset_after)
    np.testing.assert_allclose(want, _run(layer, x)[0], rtol=TOL, atol=TOL)
    loaded = from_keras(_fresh_like(layer, GRU, reset_after=reset_after), [weights])
    _assert_same_function(layer, loaded, x)
    if reset_after:  # both biases kept: exact round trip
        _assert_same_weights(layer, loaded)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_keras_simple_rnn(nonlinearity):
    layer = _layer(RNN, nonlinearity=nonlinearity)
    x = _x()
    (weights,) = to_keras(layer)
    want = keras_simple_rnn(f64(x), *map(f64, weights.values()), activation=nonlinearity)
    np.testing.assert_allclose(want, _run(layer, x)[0], rtol=TOL, atol=TOL)
    loaded = from_keras(_fresh_like(layer, RNN, nonlinearity=nonlinearity), weights)
    _assert_same_function(layer, loaded, x)


def test_keras_without_bias():
    layer = _layer(LSTM, bias=False)
    (weights,) = to_keras(layer)
    assert list(weights) == ["kernel", "recurrent_kernel"]
    loaded = from_keras(_fresh_like(layer, LSTM, bias=False), [weights])
    _assert_same_weights(layer, loaded)


def test_keras_gru_reset_convention_mismatch_is_refused():
    (weights,) = to_keras(_layer(GRU, reset_after=True))
    with pytest.raises(ValueError, match="reset_after=True"):
        from_keras(GRU(I, H, reset_after=False), [weights])
    (weights,) = to_keras(_layer(GRU, reset_after=False))
    with pytest.raises(ValueError, match="reset_after=False"):
        from_keras(GRU(I, H, reset_after=True), [weights])


# --------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (LSTM, {}),
        (GRU, {"reset_after": True}),
        (GRU, {"reset_after": False}),
        (RNN, {"nonlinearity": "tanh"}),
        (RNN, {"nonlinearity": "relu"}),
    ],
    ids=["lstm", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"],
)
def test_onnx_weights(cls, kwargs):
    layer = _layer(cls, bidirectional=True, **kwargs)
    x = _x()
    (weights,) = to_onnx_weights(layer)
    W, R, B_ = (f64(weights[k]) for k in ("W", "R", "B"))
    G = W.shape[1] // H
    assert W.shape == (2, G * H, I) and R.shape == (2, G * H, H) and B_.shape == (2, 2 * G * H)
    if cls is LSTM:
        run = onnx_lstm
    elif cls is GRU:
        def run(x_, W_, R_, B__, d):
            return onnx_gru(x_, W_, R_, B__, d, linear_before_reset=kwargs["reset_after"])
    else:
        def run(x_, W_, R_, B__, d):
            return onnx_rnn(x_, W_, R_, B__, d, activation=kwargs["nonlinearity"])
    ys = _run(layer, x)
    np.testing.assert_allclose(run(f64(x), W, R, B_, 0), ys[0], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(run(f64(x[::-1]), W, R, B_, 1)[::-1], ys[1],
                               rtol=TOL, atol=TOL)
    loaded = from_onnx_weights(_fresh_like(layer, cls, bidirectional=True, **kwargs),
                               [weights])
    _assert_same_weights(layer, loaded)


def test_onnx_weights_stacked_layers_round_trip():
    layer = _layer(LSTM, num_layers=3, bidirectional=True)
    weights = to_onnx_weights(layer)
    assert len(weights) == 3 and weights[1]["W"].shape == (2, 4 * H, 2 * H)
    loaded = from_onnx_weights(_fresh_like(layer, LSTM, num_layers=3, bidirectional=True),
                               weights)
    _assert_same_weights(layer, loaded)


def test_onnx_weights_with_wrong_direction_count_are_refused():
    weights = to_onnx_weights(_layer(GRU, bidirectional=True))
    with pytest.raises(ValueError, match="num_directions=1"):
        from_onnx_weights(GRU(I, H), weights)


# --------------------------------------------------------------------------- Haste


def test_haste_lstm():
    layer = _layer(LSTM)
    x = _x()
    (weights,) = to_haste(layer)
    want = haste_lstm(f64(x), *map(f64, weights.values()))
    np.testing.assert_allclose(want, _run(layer, x)[0], rtol=TOL, atol=TOL)
    loaded = from_haste(_fresh_like(layer, LSTM), [weights])
    _assert_same_function(layer, loaded, x)


def test_haste_gru():
    layer = _layer(GRU)
    x = _x()
    (weights,) = to_haste(layer)
    assert list(weights) == ["kernel", "recurrent_kernel", "bias", "recurrent_bias"]
    want = haste_gru(f64(x), *map(f64, weights.values()))
    np.testing.assert_allclose(want, _run(layer, x)[0], rtol=TOL, atol=TOL)
    loaded = from_haste(_fresh_like(layer, GRU), [weights])
    _assert_same_weights(layer, loaded)


def test_haste_refuses_what_it_cannot_express():
    with pytest.raises(ValueError, match="reset_after=False"):
        to_haste(GRU(I, H, reset_after=False))
    with pytest.raises(ValueError, match="Haste has no RNN layout"):
        to_haste(RNN(I, H))


# --------------------------------------------------------------------------- char-rnn


def test_char_rnn_lstm():
    layer = _layer(LSTM, num_layers=2)
    x = _x()
    weights = to_char_rnn(layer)
    assert list(weights[0]) == ["i2h.weight", "i2h.bias", "h2h.weight", "h2h.bias"]
    one = _layer(LSTM)
    (w1,) = to_char_rnn(one)
    want = char_rnn_lstm(f64(x), *map(f64, w1.values()))
    np.testing.assert_allclose(want, _run(one, x)[0], rtol=TOL, atol=TOL)
    loaded = from_char_rnn(_fresh_like(layer, LSTM, num_layers=2), weights)
    _assert_same_weights(layer, loaded)


def test_char_rnn_without_h2h_bias():
    layer = _layer(LSTM)
    (weights,) = to_char_rnn(layer)
    weights["i2h.bias"] = weights["i2h.bias"] + weights.pop("h2h.bias")
    loaded = from_char_rnn(_fresh_like(layer, LSTM), [weights])
    _assert_same_function(layer, loaded, _x())


# --------------------------------------------------------------------------- torch.nn


@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_torch_nn_identity(cls):
    layer = _layer(cls, num_layers=2, bidirectional=True, batch_first=True)
    module = to_torch_nn(layer)
    assert type(module) is getattr(torch.nn, cls.__name__)
    back = from_torch_nn(module)
    _assert_same_weights(layer, back)
    x = torch.randn(B, T, I)
    with torch.no_grad():
        np.testing.assert_allclose(module(x)[0].numpy(), layer(x)[0].numpy(),
                                   rtol=TOL, atol=TOL)


def test_torch_nn_projection_round_trip():
    layer = _layer(LSTM, proj_size=3)
    back = from_torch_nn(to_torch_nn(layer))
    assert back.proj_size == 3
    _assert_same_weights(layer, back)


# --------------------------------------------------------------------------- refusals


def test_projection_is_refused_by_foreign_layouts():
    layer = LSTM(I, H, proj_size=2)
    for convert in (to_keras, to_onnx_weights, to_haste, to_char_rnn):
        with pytest.raises(ValueError, match="proj_size=2"):
            convert(layer)


def test_shape_mismatch_names_the_array():
    (weights,) = to_keras(_layer(LSTM))
    with pytest.raises(ValueError, match="kernel"):
        from_keras(LSTM(I + 1, H), [weights])


def test_wrong_number_of_weight_dicts():
    weights = to_keras(_layer(LSTM))
    with pytest.raises(ValueError, match="expected 2 Keras weight dicts"):
        from_keras(LSTM(I, H, bidirectional=True), weights)


def test_bias_into_biasless_layer_is_refused():
    (weights,) = to_haste(_layer(LSTM))
    with pytest.raises(ValueError, match="bias=False"):
        from_haste(LSTM(I, H, bias=False), [weights])


def test_reset_before_gru_has_no_torch_nn_equivalent():
    with pytest.raises(ValueError, match="reset_after=False"):
        to_torch_nn(GRU(I, H, reset_after=False))

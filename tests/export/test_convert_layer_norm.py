"""Haste's LayerNorm layouts: rnnlab's LSTM/GRU(layer_norm=True) converted to them run the
same function in an independent transcription of Haste's equations (its
LayerNormLSTMScript: gates i,g,f,o, gamma (2, 4H), gamma_h, beta_h; LayerNormGRUScript:
gates z,r,h, bias, recurrent_bias, gamma (2, 3H); ε = 1e-5), and convert back unchanged;
the other converters refuse a layer_norm layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rnnlab.nn as rnn
from rnnlab.export.convert import (
    from_haste_layer_norm_gru,
    from_haste_layer_norm_lstm,
    to_haste,
    to_haste_layer_norm_gru,
    to_haste_layer_norm_lstm,
    to_torch_nn,
)


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _layer_norm(v, gain, bias=0.0):
    mean = v.mean(axis=-1, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=-1, keepdims=True)
    return gain * (v - mean) / np.sqrt(var + 1e-5) + bias


def haste_layer_norm_lstm(x, kernel, recurrent_kernel, bias, gamma, gamma_h, beta_h):
    """Haste's LayerNormLSTM forward, from its equations, in NumPy: y (T, B, H)."""
    H = recurrent_kernel.shape[0]
    h = c = np.zeros((x.shape[1], H))
    wx = _layer_norm(x @ kernel, gamma[0])
    ys = []
    for t in range(x.shape[0]):
        v = _layer_norm(h @ recurrent_kernel, gamma[1]) + wx[t] + bias
        i, g, f, o = np.split(v, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(_layer_norm(c, gamma_h, beta_h))
        ys.append(h)
    return np.stack(ys)


def haste_layer_norm_gru(x, kernel, recurrent_kernel, bias, recurrent_bias, gamma):
    """Haste's LayerNormGRU forward, from its equations, in NumPy: y (T, B, H)."""
    h = np.zeros((x.shape[1], recurrent_kernel.shape[0]))
    wx = _layer_norm(x @ kernel, gamma[0]) + bias
    ys = []
    for t in range(x.shape[0]):
        rh = _layer_norm(h @ recurrent_kernel, gamma[1]) + recurrent_bias
        (xz, xr, xh), (hz, hr, hh) = np.split(wx[t], 3, axis=1), np.split(rh, 3, axis=1)
        z, r = _sigmoid(xz + hz), _sigmoid(xr + hr)
        h = z * h + (1 - z) * np.tanh(xh + r * hh)
        ys.append(h)
    return np.stack(ys)


def test_haste_layer_norm_gru_runs_the_same_function_and_round_trips():
    torch.manual_seed(1)
    layer = rnn.GRU(3, 4, layer_norm=True, bidirectional=True, dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    forward, backward = to_haste_layer_norm_gru(layer)
    assert forward["gamma"].shape == (2, 12) and forward["recurrent_bias"].shape == (12,)
    with torch.no_grad():
        y, _ = layer(x)
    np.testing.assert_allclose(haste_layer_norm_gru(x.numpy(), **forward), y[..., :4].numpy(),
                               rtol=0, atol=1e-12)
    reverse = haste_layer_norm_gru(x.numpy()[::-1], **backward)[::-1]
    np.testing.assert_allclose(reverse, y[..., 4:].numpy(), rtol=0, atol=1e-12)
    fresh = from_haste_layer_norm_gru(
        rnn.GRU(3, 4, layer_norm=True, bidirectional=True, dtype=torch.float64),
        [forward, backward],
    )
    for name, value in layer.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name


def test_haste_layer_norm_lstm_runs_the_same_function_and_round_trips():
    torch.manual_seed(0)
    layer = rnn.LSTM(3, 4, layer_norm=True, dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    (weights,) = to_haste_layer_norm_lstm(layer)
    assert {k: v.shape for k, v in weights.items()} == {
        "kernel": (3, 16), "recurrent_kernel": (4, 16), "bias": (16,), "gamma": (2, 16),
        "gamma_h": (4,), "beta_h": (4,),
    }
    with torch.no_grad():
        y, _ = layer(x)
    np.testing.assert_allclose(haste_layer_norm_lstm(x.numpy(), **weights), y.numpy(),
                               rtol=0, atol=1e-12)
    fresh = rnn.LSTM(3, 4, layer_norm=True, dtype=torch.float64)
    from_haste_layer_norm_lstm(fresh, [weights])
    for name in ("weight_ih_l0", "weight_hh_l0", "gamma_ih_l0", "gamma_hh_l0", "gamma_c_l0",
                 "beta_c_l0"):
        assert torch.equal(getattr(fresh, name), getattr(layer, name)), name
    assert torch.allclose(fresh.bias_ih_l0, layer.bias_ih_l0 + layer.bias_hh_l0, rtol=0,
                          atol=1e-15)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)[0], y, rtol=0, atol=1e-12)


def test_converters_refuse_what_they_cannot_hold():
    layer = rnn.LSTM(3, 4, layer_norm=True)
    for convert in (to_haste, to_torch_nn):
        with pytest.raises(ValueError, match=r"layer_norm=True.*to_/from_haste_layer_norm_lstm"):
            convert(layer)
    # (ONNX export of layer_norm=True: tests/export/test_onnx_export.py)
    with pytest.raises(TypeError, match="LSTM with layer_norm=True, got LSTM without layer_norm"):
        to_haste_layer_norm_lstm(rnn.LSTM(3, 4))
    (weights,) = to_haste_layer_norm_lstm(layer)
    with pytest.raises(ValueError, match=r"gamma has shape \(16,\), expected \(2, G·H\)"):
        from_haste_layer_norm_lstm(layer, [{**weights, "gamma": weights["gamma"][0]}])
    no_bias = rnn.LSTM(3, 4, bias=False, layer_norm=True)
    with pytest.raises(ValueError, match="beta_h is non-zero but the layer was built with bias"):
        from_haste_layer_norm_lstm(no_bias, [{**weights, "bias": 0 * weights["bias"],
                                              "beta_h": weights["beta_h"] + 1}])

"""Bad arguments and inputs get a precise error naming what is wrong and what was expected."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab.nn as rnn


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: rnn.GRU(3, 4, proj_size=2), ValueError, "proj_size is only supported by LSTM"),
        (lambda: rnn.RNN(3, 4, proj_size=2), ValueError, "proj_size is only supported by LSTM"),
        (lambda: rnn.LSTM(3, 4, proj_size=4), ValueError, "proj_size must be smaller"),
        (lambda: rnn.LSTM(3, 4, proj_size=-1), ValueError, r"proj_size must be an integer >= 0"),
        (lambda: rnn.RNN(3, 4, nonlinearity="sigmoid"), ValueError, "unknown nonlinearity"),
        (lambda: rnn.RNNCell(3, 4, nonlinearity="gelu"), ValueError, "unknown nonlinearity"),
        (lambda: rnn.LSTM(0, 4), ValueError, r"input_size must be an integer >= 1, got 0"),
        (lambda: rnn.LSTM(3, 2.5), TypeError, r"hidden_size must be an integer >= 1"),
        (lambda: rnn.GRU(3, 4, num_layers=0), ValueError, r"num_layers must be an integer >= 1"),
        (lambda: rnn.GRU(3, 4, 2, dropout=1.5), ValueError,
         r"dropout must be a number in \[0, 1\]"),
        (lambda: rnn.GRU(3, 4, bidirectional="yes"), TypeError, "bidirectional must be a bool"),
        (lambda: rnn.LSTM(3, 4, forget_bias="1"), TypeError, "forget_bias must be a number"),
    ],
)
def test_bad_constructor_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="no effect with num_layers=1"):
        rnn.LSTM(3, 4, dropout=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnn.LSTM(3, 4, num_layers=2, dropout=0.2)


LSTM = rnn.LSTM(3, 4, num_layers=2)
GRU = rnn.GRU(3, 4, batch_first=True)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: LSTM(torch.randn(5, 2, 3, 1)), ValueError, r"input must be 3-D \(T, B, I\).*4-D"),
        (lambda: GRU(torch.randn(5)), ValueError, r"input must be 3-D \(B, T, I\)"),
        (lambda: LSTM(torch.randn(5, 2, 7)), ValueError, r"7 features.*input_size=3"),
        (lambda: LSTM([[1.0, 2.0, 3.0]]), TypeError, "input must be a torch.Tensor, got list"),
        (lambda: LSTM(torch.randn(5, 2, 3, dtype=torch.float64)), TypeError,
         r"input has dtype torch.float64 but the layer's parameters are torch.float32"),
        (lambda: LSTM(torch.ones(5, 2, 3, dtype=torch.int64)), TypeError,
         "input must be a floating-point tensor"),
        (lambda: LSTM(torch.randn(5, 2, 3, device="meta")), ValueError,
         "input is on device meta but the layer's parameters are on cpu"),
        (lambda: LSTM(torch.randn(0, 2, 3)), ValueError, "0 time steps"),
        (lambda: LSTM(torch.randn(5, 2, 3), torch.zeros(2, 2, 4)), TypeError,
         r"hx for LSTM must be a tuple \(h_0, c_0\)"),
        (lambda: LSTM(torch.randn(5, 2, 3), (torch.zeros(2, 3, 4), torch.zeros(2, 2, 4))),
         ValueError, r"h_0 has shape \(2, 3, 4\), expected \(2, 2, 4\)"),
        (lambda: LSTM(torch.randn(5, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(1, 2, 4))),
         ValueError, r"c_0 has shape \(1, 2, 4\), expected \(2, 2, 4\)"),
        (lambda: LSTM(torch.randn(5, 3), (torch.zeros(2, 1, 4), torch.zeros(2, 1, 4))),
         ValueError, "for unbatched 2-D input, h_0 must be 2-D"),
        (lambda: GRU(torch.randn(2, 5, 3), (torch.zeros(1, 2, 4),)), TypeError,
         "hx for GRU must be a tensor h_0, got tuple"),
        (lambda: GRU(torch.randn(2, 5, 3), torch.zeros(1, 2, 4, dtype=torch.float64)),
         TypeError, "h_0 has dtype torch.float64"),
        (lambda: GRU(torch.randn(2, 5, 3), lengths=[5, 6]), ValueError,
         r"lengths must lie in \[1, 5\].*\[5, 6\]"),
        (lambda: GRU(torch.randn(2, 5, 3), lengths=[0, 5]), ValueError, r"lengths must lie in"),
        (lambda: GRU(torch.randn(2, 5, 3), lengths=[5]), ValueError,
         r"lengths has shape \(1,\), expected \(2,\)"),
        (lambda: GRU(torch.randn(2, 5, 3), lengths=torch.tensor([5.0, 2.0])), TypeError,
         "lengths must hold integers"),
        (lambda: GRU(torch.randn(5, 3), lengths=[5]), ValueError, "only meaningful for batched"),
        (lambda: rnn.LSTMCell(3, 4)(torch.randn(2, 3), torch.zeros(2, 4)), TypeError,
         r"hx for LSTMCell must be a tuple \(h, c\)"),
        (lambda: rnn.GRUCell(3, 4)(torch.randn(2, 3), torch.zeros(3, 4)), ValueError,
         r"hx has shape \(3, 4\), expected \(2, 4\)"),
        (lambda: rnn.RNNCell(3, 4)(torch.randn(2, 2, 3)), ValueError, "must be 2-D"),
    ],
)
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_packed_input_with_lengths_is_rejected():
    packed = torch.nn.utils.rnn.pack_sequence([torch.randn(4, 3), torch.randn(2, 3)])
    with pytest.raises(ValueError, match="lengths must not be given with a PackedSequence"):
        LSTM(packed, lengths=[4, 2])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_rejected_when_asked(bad):
    checked = rnn.GRU(3, 4, check_finite=True)
    x = torch.randn(5, 2, 3)
    x[3, 1, 2] = bad
    message = r"input contains NaN or Inf \(first at index \[3, 1, 2\]\)"
    with pytest.raises(ValueError, match=message):
        checked(x)
    h0 = torch.zeros(1, 2, 4)
    h0[0, 0, 0] = bad
    with pytest.raises(ValueError, match="h_0 contains NaN or Inf"):
        checked(torch.randn(5, 2, 3), h0)
    if bad != bad:  # NaN: without the check it propagates as IEEE arithmetic says
        assert torch.isnan(rnn.GRU(3, 4)(x)[0]).any()


@settings(max_examples=40, deadline=None)
@given(
    family=st.sampled_from(["rnn", "lstm", "gru"]),
    T=st.integers(1, 6),
    B=st.integers(1, 4),
    layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    batch_first=st.booleans(),
    data=st.data(),
)
def test_shapes_and_lengths_property(family, T, B, layers, bidirectional, batch_first, data):
    """Output and state shapes for any configuration; padding outputs are exactly zero and
    the final state equals the output at each sample's last valid step."""
    cls = {"rnn": rnn.RNN, "lstm": rnn.LSTM, "gru": rnn.GRU}[family]
    layer = cls(2, 3, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    x = torch.randn((B, T, 2) if batch_first else (T, B, 2))
    out, h = layer(x, lengths=lengths)
    D = 2 if bidirectional else 1
    assert out.shape == ((B, T, D * 3) if batch_first else (T, B, D * 3))
    h_n = h[0] if family == "lstm" else h
    assert h_n.shape == (layers * D, B, 3)
    y = out if batch_first else out.transpose(0, 1)  # (B, T, D*3)
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(y[b, n:] == 0)
        assert torch.equal(y[b, n - 1, :3], h_n[-D, b])  # last layer, forward direction
        if bidirectional:
            assert torch.equal(y[b, 0, 3:], h_n[-1, b])  # backward direction ends at t = 0


@settings(max_examples=30, deadline=None)
@given(bad=st.one_of(st.integers(-3, 0), st.integers(7, 20)))
def test_out_of_range_length_property(bad):
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 6\]"):
        GRU(torch.randn(2, 6, 3), lengths=[3, bad])

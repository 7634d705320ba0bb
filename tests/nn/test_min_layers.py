"""rnnlab.nn.MinGRU / MinLSTM against the reference on random configurations (stacked,
bidirectional, lengths, packed, batch_first), the scan against the loop, streaming,
recording and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab.nn as rnn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import reference

LAYERS = {"mingru": rnn.MinGRU, "minlstm": rnn.MinLSTM}
REFERENCE = {
    "mingru": (reference.mingru_forward, reference.mingru_backward),
    "minlstm": (reference.minlstm_forward, reference.minlstm_backward),
}


def reference_stack(layer, x, h0, lengths, dy, dh_n):
    """The layer's function composed from the reference, with every gradient: returns
    (y (T, B, D·H), h_n (L·D, B, H), {parameter name: grad}, dx, dh0). Time-major, float64."""
    forward, backward = REFERENCE[layer.family]
    D, H = layer.num_directions, layer.hidden_size
    params = {k: v.detach().double().numpy() for k, v in layer.named_parameters()}
    inputs, caches, h_n = [x], [], []
    for k in range(layer.num_layers):
        outs = []
        for d in range(D):
            suffix = f"_l{k}" + ("_reverse" if d else "")
            y, h, cache = forward(
                inputs[-1], h0[k * D + d], params["weight_ih" + suffix],
                params.get("bias_ih" + suffix), lengths=lengths, reverse=bool(d),
            )
            outs.append(y)
            caches.append(cache)
            h_n.append(h)
        inputs.append(np.concatenate(outs, axis=2))
    grads, dh0 = {}, [None] * (layer.num_layers * D)
    d_out = dy
    for k in reversed(range(layer.num_layers)):
        d_in = 0.0
        for d in range(D):
            suffix = f"_l{k}" + ("_reverse" if d else "")
            g = backward(d_out[:, :, d * H : (d + 1) * H], dh_n[k * D + d], caches[k * D + d])
            grads["weight_ih" + suffix] = g["w_ih"]
            if layer.bias:
                grads["bias_ih" + suffix] = g["b_ih"]
            dh0[k * D + d] = g["h0"]
            d_in = d_in + g["x"]
        d_out = d_in
    return inputs[-1], np.stack(h_n), grads, d_out, np.stack(dh0)


def _configs() -> list:
    rng = np.random.default_rng(17)
    return [
        pytest.param(
            {
                "family": ("mingru", "minlstm")[n % 2],
                "dtype": (torch.float64, torch.float32)[(n // 2) % 2],
                "num_layers": int(rng.integers(1, 3)),
                "bidirectional": n in (0, 2, 5, 7),  # with plain, packed and lengths input
                "batch_first": bool(rng.integers(2)),
                "bias": bool(n != 3),
                "inputs": ("plain", "lengths", "packed")[n % 3],
                "seed": n,
            },
            id=f"config{n}",
        )
        for n in range(8)
    ]


@pytest.mark.parametrize("config", _configs())
def test_layer_matches_reference(config):
    torch.manual_seed(config["seed"])
    T, B, I, H = 6, 3, 4, 5
    layer = LAYERS[config["family"]](
        I, H, config["num_layers"], config["bias"], config["batch_first"],
        bidirectional=config["bidirectional"], dtype=config["dtype"],
    )
    LD = layer.num_layers * layer.num_directions
    x = torch.randn(T, B, I, dtype=config["dtype"], requires_grad=True)
    h0 = torch.randn(LD, B, H, dtype=config["dtype"], requires_grad=True)
    lengths = None if config["inputs"] == "plain" else [6, 2, 4]
    dy = torch.randn(T, B, layer.num_directions * H, dtype=torch.float64)
    dh_n = torch.randn(LD, B, H, dtype=torch.float64)
    if lengths is not None:
        dy[torch.arange(T)[:, None] >= torch.tensor(lengths)[None, :]] = 0.0

    feed = x.transpose(0, 1) if layer.batch_first else x
    if config["inputs"] == "packed":
        packed = pack_padded_sequence(feed, lengths, batch_first=layer.batch_first,
                                      enforce_sorted=False)
        out, h_n = layer(packed, h0)
        y, _ = pad_packed_sequence(out, total_length=T)
    else:
        y, h_n = layer(feed, h0, lengths=lengths)
        y = y.transpose(0, 1) if layer.batch_first else y
    ((y * dy.to(y.dtype)).sum() + (h_n * dh_n.to(y.dtype)).sum()).backward()

    ref_y, ref_h, grads, dx, dh0 = reference_stack(
        layer, x.detach().double().numpy(), h0.detach().double().numpy(),
        None if lengths is None else np.asarray(lengths), dy.numpy(), dh_n.numpy(),
    )
    dtype = config["dtype"]
    assert_rel_close(y.detach(), torch.from_numpy(ref_y), OUT_TOL[dtype], "output")
    assert_rel_close(h_n.detach(), torch.from_numpy(ref_h), OUT_TOL[dtype], "h_n")
    assert_rel_close(x.grad, torch.from_numpy(dx), GRAD_TOL[dtype], "input grad")
    assert_rel_close(h0.grad, torch.from_numpy(dh0), GRAD_TOL[dtype], "h0 grad")
    for name, p in layer.named_parameters():
        assert_rel_close(p.grad, torch.from_numpy(grads[name]), GRAD_TOL[dtype], name)


@pytest.mark.parametrize("family", sorted(LAYERS))
def test_parallel_scan_equals_loop_in_float32_over_a_long_sequence(family):
    """T = 2048 in float32: the scan and the loop agree, and both stay within the
    float32 tolerance of the float64 layer."""
    torch.manual_seed(0)
    layer = LAYERS[family](3, 4, num_layers=2)
    x = torch.randn(2048, 2, 3)
    scan = layer(x)[0]
    layer.parallel_scan = False
    loop = layer(x)[0]
    exact = layer.double()(x.double())[0]
    assert_rel_close(scan, exact, OUT_TOL[torch.float32], "scan vs float64")
    assert_rel_close(loop, exact, OUT_TOL[torch.float32], "loop vs float64")


@pytest.mark.parametrize("family", sorted(LAYERS))
def test_step_and_stream_equal_the_sequence(family):
    torch.manual_seed(1)
    layer = LAYERS[family](3, 4, num_layers=2, batch_first=True).eval()
    x = torch.randn(2, 5, 3)
    y, h_n = layer(x)
    h, steps = None, []
    for t in range(5):
        out, h = layer.step(x[:, t], h)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 1), y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h, h_n, rtol=1e-6, atol=1e-6)
    unbatched = LAYERS[family](3, 4, num_layers=2).eval()
    unbatched.load_state_dict(layer.state_dict())
    stream = rnn.Stream(unbatched)
    batch_first = rnn.Stream(layer)
    with torch.no_grad():
        torch.testing.assert_close(batch_first.step(x[0]), y[0].detach(), rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        streamed = torch.stack([stream.step(x[0, t]) for t in range(5)])
    torch.testing.assert_close(streamed, y[0].detach(), rtol=1e-6, atol=1e-6)


def test_record_gates_and_gradients():
    torch.manual_seed(2)
    layer = rnn.MinLSTM(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    with rnn.record(layer) as rec:
        y, _ = layer(x, lengths=[5, 2])
        y.sum().backward()
    gates = rec.gates["l0"]
    assert sorted(gates) == ["f", "f_norm", "h_tilde", "i"]
    w_f, w_i, _ = layer.weight_ih_l0.detach().chunk(3)
    b_f, b_i, _ = layer.bias_ih_l0.detach().chunk(3)
    f, i = torch.sigmoid(x @ w_f.T + b_f), torch.sigmoid(x @ w_i.T + b_i)
    torch.testing.assert_close(gates["f"][0], f[0])
    torch.testing.assert_close(gates["f_norm"][1, :2], (f / (f + i))[1, :2])
    assert (gates["i"][1, 2:] == 0).all()  # padding steps
    assert rec.hidden_grads["l0"].shape == (2, 5, 4)
    assert (rec.hidden_grads["l0"][1, 2:] == 0).all()


def test_parameters_and_state_shapes():
    layer = rnn.MinGRU(3, 4, num_layers=2, bidirectional=True, bias=False)
    assert [n for n, _ in layer.named_parameters()] == [
        "weight_ih_l0", "weight_ih_l0_reverse", "weight_ih_l1", "weight_ih_l1_reverse"]
    assert layer.weight_ih_l1.shape == (8, 8)
    assert rnn.MinLSTM(3, 4).weight_ih_l0.shape == (12, 3)
    y, h_n = layer(torch.randn(5, 2, 3))
    assert y.shape == (5, 2, 8) and h_n.shape == (4, 2, 4)
    assert "MinGRU(3, 4, num_layers=2, bias=False, bidirectional=True)" == repr(layer)


def test_errors_name_what_was_expected():
    layer = rnn.MinGRU(3, 4, num_layers=2)
    with pytest.raises(rnn.ArgumentError, match=r"h_0 has shape \(1, 2, 4\), expected \(2, 2, 4\)"):
        layer(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(rnn.ArgumentError, match="expected input_size=3"):
        layer(torch.randn(5, 2, 7))
    with pytest.raises(rnn.ArgumentError, match="bidirectional"):
        rnn.MinLSTM(3, 4, bidirectional=True).step(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\]"):
        rnn.MinLSTM(3, 4, dropout=1.5)
    with pytest.raises(TypeError, match="parallel_scan must be a bool"):
        rnn.MinLSTM(3, 4, parallel_scan=1)

"""The NumPy reference cells against central differences, torch autograd and torch.nn (float64).

Every test draws its inputs from a seeded generator; the loss is always
L = Σ dy ⊙ y + Σ dh_n ⊙ h_n (+ Σ dc_n ⊙ c_n) with random dy, dh_n, dc_n.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.reference import (
    GRUCache,
    LSTMCache,
    RNNCache,
    gru_backward,
    gru_forward,
    lstm_backward,
    lstm_forward,
    rnn_backward,
    rnn_forward,
)

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "gru_reset_before")
N_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
LENGTHS = (2, 4, 1)  # for B = 3, T = 4: one full span, one shorter, one single step
F64 = {"dtype": torch.float64}


def family(cell: str) -> str:
    return cell.split("_")[0]


# ----------------------------------------------------------------------------- the cases


def make_inputs(cell, rng, *, T=4, B=3, I=3, H=4, P=3, bias="both"):
    """Every argument of the cell's forward, keyed by its name; None for an absent one."""
    out = P if cell == "lstm_proj" else H  # the size of h
    G = N_GATES[family(cell)]
    inputs = {
        "x": rng.normal(size=(T, B, I)),
        "h0": 0.5 * rng.normal(size=(B, out)),
        "w_ih": 0.6 * rng.normal(size=(G * H, I)),
        "w_hh": 0.6 * rng.normal(size=(G * H, out)),
        "b_ih": 0.3 * rng.normal(size=G * H) if bias in ("both", "ih_only") else None,
        "b_hh": 0.3 * rng.normal(size=G * H) if bias == "both" else None,
    }
    if family(cell) == "lstm":
        inputs["c0"] = 0.5 * rng.normal(size=(B, H))
        inputs["w_hr"] = 0.6 * rng.normal(size=(P, H)) if cell == "lstm_proj" else None
    return inputs


def forward(cell, inputs, lengths=None, reverse=False):
    """(y, final states as a tuple, cache) from the reference."""
    kind = family(cell)
    common = {"lengths": lengths, "reverse": reverse}
    if kind == "rnn":
        args = [inputs[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")]
        y, h_n, cache = rnn_forward(*args, nonlinearity=cell.split("_")[1], **common)
        return y, (h_n,), cache
    if kind == "lstm":
        args = [inputs[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")]
        y, (h_n, c_n), cache = lstm_forward(*args, **common)
        return y, (h_n, c_n), cache
    args = [inputs[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")]
    y, h_n, cache = gru_forward(*args, reset_after=cell == "gru", **common)
    return y, (h_n,), cache


def backward(cell, dy, dfinal, cache):
    kind = family(cell)
    if kind == "rnn":
        return rnn_backward(dy, *dfinal, cache)
    if kind == "lstm":
        return lstm_backward(dy, *dfinal, cache)
    return gru_backward(dy, *dfinal, cache)


def loss(cell, inputs, dy, dfinal, lengths, reverse) -> float:
    y, final, _ = forward(cell, inputs, lengths, reverse)
    return float(np.sum(dy * y) + sum(np.sum(d * s) for d, s in zip(dfinal, final, strict=True)))


def random_cotangents(rng, y, final):
    return rng.normal(size=y.shape), tuple(rng.normal(size=s.shape) for s in final)


def assert_close(actual, expected, rtol, atol, what):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


# ---------------------------------------------------------------- 1. central differences


def central_difference(f, array, eps=1e-6):
    """∂f/∂array by (f(a + ε) - f(a - ε)) / 2ε, one element at a time, perturbing in place."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        f_plus = f()
        array[index] = saved - eps
        f_minus = f()
        array[index] = saved
        grad[index] = (f_plus - f_minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", ["both", "none", "ih_only"])
@pytest.mark.parametrize("cell", CELLS)
def test_backward_matches_central_differences(cell, bias, lengths, reverse):
    rng = np.random.default_rng(0)
    inputs = make_inputs(cell, rng, bias=bias)
    y, final, cache = forward(cell, inputs, lengths, reverse)
    dy, dfinal = random_cotangents(rng, y, final)
    grads = backward(cell, dy, dfinal, cache)

    assert set(grads) == set(inputs) | {"h"}
    for name, value in inputs.items():
        if value is None:
            assert grads[name] is None, name
            continue
        numeric = central_difference(
            lambda: loss(cell, inputs, dy, dfinal, lengths, reverse), value
        )
        assert grads[name].shape == value.shape, name
        assert_close(grads[name], numeric, rtol=1e-6, atol=1e-8, what=name)


# ------------------------------------------------- 2. torch autograd, step by step and nn


def torch_step_loop(cell, t_in, lengths, reverse, delta):
    """An independent per-step torch implementation; delta[t] is added to h_t after step t.

    ∂L/∂delta[t] is then the total gradient into h_t, the reference's "h".
    """
    kind = family(cell)
    x, h, c = t_in["x"], t_in["h0"], t_in.get("c0")
    w_ih, w_hh = t_in["w_ih"], t_in["w_hh"]
    b_ih = t_in["b_ih"] if t_in["b_ih"] is not None else torch.zeros(w_ih.shape[0], **F64)
    b_hh = t_in["b_hh"] if t_in["b_hh"] is not None else torch.zeros(w_hh.shape[0], **F64)
    T, B, _ = x.shape
    span = torch.full((B,), T) if lengths is None else torch.tensor(lengths)
    ys = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        keep = (t < span)[:, None]
        if kind == "rnn":
            act = torch.tanh if cell == "rnn_tanh" else torch.relu
            h_t = act(x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        elif kind == "lstm":
            i, f, g, o = (x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)
            c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_t = torch.sigmoid(o) * torch.tanh(c_t)
            if t_in["w_hr"] is not None:
                h_t = h_t @ t_in["w_hr"].T
            c = torch.where(keep, c_t, c)
        else:
            xr, xz, xn = (x[t] @ w_ih.T + b_ih).chunk(3, dim=1)
            hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, dim=1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            if cell == "gru":
                n = torch.tanh(xn + r * hn)
            else:
                H = w_hh.shape[1]
                n = torch.tanh(xn + (r * h) @ w_hh[2 * H:].T + b_hh[2 * H:])
            h_t = (1 - z) * n + z * h
        h = torch.where(keep, h_t + delta[t], h)
        ys[t] = torch.where(keep, h, torch.zeros_like(h))
    return torch.stack(ys), ((h,) if c is None else (h, c))



def leaves(inputs):
    return {
        k: None if v is None else torch.tensor(v, **F64, requires_grad=True)
        for k, v in inputs.items()
    }


def torch_loop_results(cell, inputs, dy, dfinal, lengths, reverse):
    """Outputs, final states and gradients (with "h") from the step loop under autograd."""
    t_in = leaves(inputs)
    T, B, _ = inputs["x"].shape
    delta = torch.zeros((T, B, inputs["h0"].shape[1]), **F64, requires_grad=True)
    y, final = torch_step_loop(cell, t_in, lengths, reverse, delta)
    backprop(y, final, dy, dfinal)
    grads = {k: None if v is None else v.grad.numpy() for k, v in t_in.items()}
    grads["h"] = delta.grad.numpy()
    return y.detach().numpy(), tuple(s.detach().numpy() for s in final), grads


def backprop(y, final, dy, dfinal):
    total = (torch.from_numpy(dy) * y).sum()
    for d, s in zip(dfinal, final, strict=True):
        total = total + (torch.from_numpy(d) * s).sum()
    total.backward()


def torch_nn_results(cell, inputs, dy, dfinal, lengths, reverse):
    """The same from torch.nn: a reverse direction is the reverse half of a bidirectional layer."""
    kind = family(cell)
    T, _, I = inputs["x"].shape
    H = inputs["w_hh"].shape[0] // N_GATES[kind]
    options = {"bias": inputs["b_ih"] is not None, "bidirectional": reverse, **F64}
    if kind == "rnn":
        module = torch.nn.RNN(I, H, nonlinearity=cell.split("_")[1], **options)
    elif kind == "lstm":
        P = 0 if inputs["w_hr"] is None else inputs["w_hr"].shape[0]
        module = torch.nn.LSTM(I, H, proj_size=P, **options)
    else:
        module = torch.nn.GRU(I, H, **options)
    suffix = "_reverse" if reverse else ""
    names = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh",
             "w_hr": "weight_hr"}
    params = {k: getattr(module, f"{v}_l0{suffix}") for k, v in names.items()
              if inputs.get(k) is not None}
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(torch.from_numpy(inputs[k]))

    t_in = leaves({k: inputs[k] for k in ("x", "h0", "c0") if k in inputs})
    d = 1 if reverse else 0  # the direction we compare
    # the forward direction of a bidirectional layer gets a state of its own, outside the loss
    hx = tuple(
        torch.stack([torch.randn_like(s), s]) if reverse else s[None]
        for s in (t_in["h0"], t_in.get("c0")) if s is not None
    )
    x = t_in["x"]
    if lengths is not None:
        x = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
    out, final = module(x, hx if kind == "lstm" else hx[0])
    if lengths is not None:
        out, _ = pad_packed_sequence(out, total_length=T)
    width = inputs["h0"].shape[1]
    y = out[..., d * width:(d + 1) * width]
    final = tuple(s[d] for s in (final if kind == "lstm" else (final,)))
    backprop(y, final, dy, dfinal)
    grads = {k: v.grad.numpy() for k, v in t_in.items()}
    grads.update({k: p.grad.numpy() for k, p in params.items()})
    return y.detach().numpy(), tuple(s.detach().numpy() for s in final), grads


def assert_matches(expected, reference, what):
    """Reference (y, final, grads) equal to expected within float64 round-off."""
    (y, final, grads), (ref_y, ref_final, ref_grads) = expected, reference
    assert_close(ref_y, y, rtol=1e-10, atol=1e-12, what=f"{what}: y")
    for i, (s, ref_s) in enumerate(zip(final, ref_final, strict=True)):
        assert_close(ref_s, s, rtol=1e-10, atol=1e-12, what=f"{what}: final state {i}")
    for name, g in grads.items():
        if g is None:
            assert ref_grads[name] is None, f"{what}: {name}"
        else:
            assert_close(ref_grads[name], g, rtol=1e-10, atol=1e-12, what=f"{what}: d{name}")


def reference_results(cell, inputs, lengths, reverse, rng):
    y, final, cache = forward(cell, inputs, lengths, reverse)
    dy, dfinal = random_cotangents(rng, y, final)
    return (y, final, backward(cell, dy, dfinal, cache)), dy, dfinal


def check_against_torch(cell, inputs, lengths, reverse, rng):
    reference, dy, dfinal = reference_results(cell, inputs, lengths, reverse, rng)
    loop = torch_loop_results(cell, inputs, dy, dfinal, lengths, reverse)
    assert_matches(loop, reference, "torch step loop")
    if cell != "gru_reset_before":  # torch.nn has only the reset-after GRU
        assert_matches(torch_nn_results(cell, inputs, dy, dfinal, lengths, reverse), reference,
                       "torch.nn")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", ["both", "none"])
@pytest.mark.parametrize("cell", CELLS)
def test_matches_torch_autograd(cell, bias, lengths, reverse):
    rng = np.random.default_rng(1)
    check_against_torch(cell, make_inputs(cell, rng, bias=bias), lengths, reverse, rng)


@settings(max_examples=60, deadline=None)
@given(
    cell=st.sampled_from(CELLS),
    T=st.integers(1, 6),
    B=st.integers(1, 4),
    I=st.integers(1, 4),
    H=st.integers(2, 5),
    reverse=st.booleans(),
    bias=st.booleans(),
    data=st.data(),
)
def test_matches_torch_autograd_on_random_shapes(cell, T, B, I, H, reverse, bias, data):
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    lengths = data.draw(
        st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B), label="lengths"
    )
    rng = np.random.default_rng(seed)
    inputs = make_inputs(cell, rng, T=T, B=B, I=I, H=H, P=H - 1, bias="both" if bias else "none")
    check_against_torch(cell, inputs, lengths, reverse, rng)


# ------------------------------------------------------- 3. properties of the semantics


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS)
def test_padding_is_inert(cell, reverse):
    """NaN in padding reaches nothing; outputs, gates and gradients are 0 there."""
    rng = np.random.default_rng(2)
    inputs = make_inputs(cell, rng)
    clean = forward(cell, inputs, LENGTHS, reverse)
    pad = np.arange(4)[:, None] >= np.array(LENGTHS)[None, :]  # (T, B)
    inputs["x"][pad] = np.nan
    y, final, cache = forward(cell, inputs, LENGTHS, reverse)
    dy, dfinal = random_cotangents(rng, y, final)
    grads = backward(cell, dy, dfinal, cache)

    np.testing.assert_array_equal(y, clean[0])
    for s, clean_s in zip(final, clean[1], strict=True):
        np.testing.assert_array_equal(s, clean_s)
    assert not np.any(y[pad])
    for name, gate in cache.gates.items():
        assert not np.any(gate[pad]), name
    assert not np.any(grads["x"][pad])
    assert not np.any(grads["h"][pad])
    for name, g in grads.items():
        assert g is None or np.all(np.isfinite(g)), name


@pytest.mark.parametrize("cell", CELLS)
def test_final_state_is_the_last_valid_output(cell):
    rng = np.random.default_rng(3)
    inputs = make_inputs(cell, rng)
    last = np.array(LENGTHS) - 1
    batch = np.arange(3)
    y, (h_n, *_), _ = forward(cell, inputs, LENGTHS, reverse=False)
    np.testing.assert_array_equal(h_n, y[last, batch])
    y, (h_n, *_), _ = forward(cell, inputs, LENGTHS, reverse=True)
    np.testing.assert_array_equal(h_n, y[0])


@pytest.mark.parametrize("cell", CELLS)
def test_reverse_is_forward_on_each_flipped_span(cell):
    """Reverse over padded input = forward over each sample's valid span, flipped."""
    rng = np.random.default_rng(4)
    inputs = make_inputs(cell, rng)
    y, final, cache = forward(cell, inputs, LENGTHS, reverse=True)
    for b, L in enumerate(LENGTHS):
        alone = dict(inputs)
        alone["x"] = inputs["x"][:L, b:b + 1][::-1]
        alone["h0"] = inputs["h0"][b:b + 1]
        if "c0" in inputs:
            alone["c0"] = inputs["c0"][b:b + 1]
        y_b, final_b, cache_b = forward(cell, alone, None, reverse=False)
        assert_close(y[:L, b], y_b[::-1, 0], rtol=1e-12, atol=1e-14, what=f"y of sample {b}")
        for s, s_b in zip(final, final_b, strict=True):
            assert_close(s[b], s_b[0], rtol=1e-12, atol=1e-14, what=f"final state of sample {b}")
        for name, gate in cache.gates.items():
            assert_close(gate[:L, b], cache_b.gates[name][::-1, 0], rtol=1e-12, atol=1e-14,
                         what=f"gate {name} of sample {b}")


@pytest.mark.parametrize("cell", CELLS)
def test_gates_reproduce_the_outputs(cell):
    """The recorded gates are the ones in the docstring equations."""
    rng = np.random.default_rng(5)
    inputs = make_inputs(cell, rng)
    y, _, cache = forward(cell, inputs, LENGTHS, reverse=False)
    valid = cache.valid[..., 0]
    h_prev = cache.h_prev
    gates = cache.gates
    if family(cell) == "rnn":
        h = np.tanh(gates["a"]) if cell == "rnn_tanh" else np.maximum(gates["a"], 0.0)
    elif family(cell) == "lstm":
        c = gates["f"] * cache.c_prev + gates["i"] * gates["g"]
        np.testing.assert_allclose(gates["c"][valid], c[valid], rtol=1e-14)
        h = gates["o"] * np.tanh(gates["c"])
        if inputs["w_hr"] is not None:
            h = h @ inputs["w_hr"].T
    else:
        h = (1.0 - gates["z"]) * gates["n"] + gates["z"] * h_prev
    np.testing.assert_allclose(y[valid], h[valid], rtol=1e-14)
    assert set(gates) == {"rnn": {"a"}, "lstm": set("ifgoc"), "gru": set("rzn")}[family(cell)]


def test_absent_output_gradients_count_as_zero():
    rng = np.random.default_rng(6)
    inputs = make_inputs("lstm_proj", rng)
    y, final, cache = forward("lstm_proj", inputs)
    dy = rng.normal(size=y.shape)
    with_none = lstm_backward(dy, None, None, cache)
    with_zeros = lstm_backward(dy, *(np.zeros_like(s) for s in final), cache)
    for name, g in with_zeros.items():
        np.testing.assert_array_equal(with_none[name], g, err_msg=name)


def test_inputs_are_converted_to_float64():
    rng = np.random.default_rng(7)
    inputs = make_inputs("gru", rng)
    as_f32 = {k: v.astype(np.float32) for k, v in inputs.items()}
    as_f32["h0"] = as_f32["h0"].tolist()
    y, h_n, cache = gru_forward(**as_f32, lengths=[2, 4, 1])
    assert y.dtype == h_n.dtype == np.float64
    assert all(gate.dtype == np.float64 for gate in cache.gates.values())
    assert gru_backward(np.ones_like(y), None, cache)["w_ih"].dtype == np.float64


# ------------------------------------------------------------------------- 4. error paths


def _rnn_args(**changes):
    T, B, I, H = 4, 3, 3, 4
    args = {"x": np.zeros((T, B, I)), "h0": np.zeros((B, H)), "w_ih": np.zeros((H, I)),
            "w_hh": np.zeros((H, H)), "b_ih": np.zeros(H), "b_hh": np.zeros(H)}
    return {**args, **changes}


def _lstm_args(**changes):
    T, B, I, H, P = 4, 3, 3, 4, 2
    args = {"x": np.zeros((T, B, I)), "h0": np.zeros((B, P)), "c0": np.zeros((B, H)),
            "w_ih": np.zeros((4 * H, I)), "w_hh": np.zeros((4 * H, P)),
            "w_hr": np.zeros((P, H))}
    return {**args, **changes}


def _gru_args(**changes):
    T, B, I, H = 4, 3, 3, 4
    args = {"x": np.zeros((T, B, I)), "h0": np.zeros((B, H)), "w_ih": np.zeros((3 * H, I)),
            "w_hh": np.zeros((3 * H, H))}
    return {**args, **changes}


FORWARD_ERRORS = [
    (rnn_forward, _rnn_args(x=np.zeros((4, 3))),
     r"x must have shape \(T, B, I\), a 3-D array; got shape \(4, 3\)"),
    (rnn_forward, _rnn_args(h0=np.zeros((3, 5))),
     r"h0 must have shape \(B, H\) = \(3, 4\); got shape \(3, 5\)"),
    (rnn_forward, _rnn_args(h0=np.zeros((1, 3, 4))),
     r"h0 must have shape \(B, H\) = \(3, 4\); got shape \(1, 3, 4\)"),
    (rnn_forward, _rnn_args(w_ih=np.zeros((4, 2))),
     r"w_ih must have shape \(H, I\) = \(4, 3\); got shape \(4, 2\)"),
    (rnn_forward, _rnn_args(w_hh=np.zeros((4, 5))),
     r"w_hh must have shape \(H, H\) = \(4, 4\); got shape \(4, 5\)"),
    (rnn_forward, _rnn_args(w_hh=np.zeros(4)),
     r"w_hh must be a 2-D array of shape \(H, H\); got shape \(4,\)"),
    (rnn_forward, _rnn_args(b_hh=np.zeros(5)),
     r"b_hh must have shape \(H,\) = \(4,\); got shape \(5,\)"),
    (rnn_forward, _rnn_args(nonlinearity="sigmoid"),
     r"nonlinearity must be 'tanh' or 'relu'; got 'sigmoid'"),
    (rnn_forward, _rnn_args(lengths=[4, 0, 2]),
     r"lengths must lie in \[1, T\] = \[1, 4\]; got \[4, 0, 2\]"),
    (rnn_forward, _rnn_args(lengths=[4, 5, 2]),
     r"lengths must lie in \[1, T\] = \[1, 4\]; got \[4, 5, 2\]"),
    (rnn_forward, _rnn_args(lengths=[4, 2]),
     r"lengths must have shape \(B,\) = \(3,\); got shape \(2,\)"),
    (rnn_forward, _rnn_args(lengths=[4.0, 2.0, 1.0]),
     r"lengths must hold integers; got dtype float64"),
    (lstm_forward, _lstm_args(w_hh=np.zeros((15, 2))),
     r"w_hh must be a 2-D array of shape \(4H, P\), its rows 4 gate blocks of H; "
     r"got shape \(15, 2\)"),
    (lstm_forward, _lstm_args(w_hh=np.zeros((16, 4))),
     r"w_hh must have shape \(4H, P\) = \(16, 2\); got shape \(16, 4\)"),
    (lstm_forward, _lstm_args(w_hr=np.zeros((2, 3))),
     r"w_hr must have shape \(P, H\), a 2-D array; got shape \(2, 3\)"),
    (lstm_forward, _lstm_args(h0=np.zeros((3, 4))),
     r"h0 must have shape \(B, P\) = \(3, 2\); got shape \(3, 4\)"),
    (lstm_forward, _lstm_args(c0=np.zeros((3, 2))),
     r"c0 must have shape \(B, H\) = \(3, 4\); got shape \(3, 2\)"),
    (lstm_forward, _lstm_args(w_hr=None),
     r"h0 must have shape \(B, H\) = \(3, 4\); got shape \(3, 2\)"),
    (lstm_forward, _lstm_args(w_hr=None, h0=np.zeros((3, 4))),
     r"w_hh must have shape \(4H, H\) = \(16, 4\); got shape \(16, 2\)"),
    (lstm_forward, _lstm_args(b_ih=np.zeros(4)),
     r"b_ih must have shape \(4H,\) = \(16,\); got shape \(4,\)"),
    (gru_forward, _gru_args(w_ih=np.zeros((12, 2))),
     r"w_ih must have shape \(3H, I\) = \(12, 3\); got shape \(12, 2\)"),
    (gru_forward, _gru_args(w_hh=np.zeros((10, 4))),
     r"w_hh must be a 2-D array of shape \(3H, H\), its rows 3 gate blocks of H; "
     r"got shape \(10, 4\)"),
    (gru_forward, _gru_args(h0=np.zeros(4)),
     r"h0 must have shape \(B, H\) = \(3, 4\); got shape \(4,\)"),
]


@pytest.mark.parametrize(("function", "kwargs", "message"), FORWARD_ERRORS)
def test_forward_rejects_bad_arguments(function, kwargs, message):
    with pytest.raises(ValueError, match=message):
        function(**kwargs)


def test_backward_rejects_bad_gradients_and_caches():
    _, _, rnn_cache = rnn_forward(**_rnn_args())
    _, _, lstm_cache = lstm_forward(**_lstm_args())
    _, _, gru_cache = gru_forward(**_gru_args())
    assert isinstance(rnn_cache, RNNCache)
    assert isinstance(lstm_cache, LSTMCache)
    assert isinstance(gru_cache, GRUCache)
    with pytest.raises(ValueError, match=r"dy must have shape \(T, B, H\) = \(4, 3, 4\); got "
                                         r"shape \(4, 3, 5\)"):
        rnn_backward(np.zeros((4, 3, 5)), None, rnn_cache)
    with pytest.raises(ValueError, match=r"dh_n must have shape \(B, P\) = \(3, 2\); got shape "
                                         r"\(3, 4\)"):
        lstm_backward(None, np.zeros((3, 4)), None, lstm_cache)
    with pytest.raises(ValueError, match=r"dc_n must have shape \(B, H\) = \(3, 4\); got shape "
                                         r"\(3, 2\)"):
        lstm_backward(None, None, np.zeros((3, 2)), lstm_cache)
    with pytest.raises(ValueError, match=r"dh_n must have shape \(B, H\) = \(3, 4\); got shape "
                                         r"\(4,\)"):
        gru_backward(None, np.zeros(4), gru_cache)
    with pytest.raises(TypeError, match="cache must be the GRUCache from gru_forward; got "
                                        "RNNCache"):
        gru_backward(None, None, rnn_cache)

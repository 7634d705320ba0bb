"""The masked ops (recurrent dropout, zoneout) on every backend vs the NumPy reference:
outputs, final states, saved activations, every gradient and ∂L/∂h_t through the probe;
padding (NaN, never read) and reverse. Plus opcheck and double backward."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from helpers import GRAD_TOL, OUT_TOL, assert_rel_close, backend_cases
from rnnlab import backends, ops_masked, reference

CASES = backend_cases()
VARIANTS = ["lstm", "lstm_proj", "gru", "gru_reset_before"]


def _case(variant: str, seed: int, small: bool = False) -> dict:
    """Sizes, arrays and masks of one draw (float64 NumPy); ``small``: T = B = I = H = 2."""
    rng = random.Random(f"{variant}-{seed}")
    T, B, I, H = rng.randint(1, 6), rng.randint(1, 4), rng.randint(1, 4), rng.randint(2, 5)
    if small:
        T, B, I, H = 2, 2, 2, 2
    P = rng.randint(1, H - 1) if variant == "lstm_proj" else H
    lstm = variant.startswith("lstm")
    G = (4 if lstm else 3) * H
    rs = np.random.default_rng(seed)
    a = {
        "x": rs.normal(size=(T, B, I)), "h0": rs.normal(size=(B, P)),
        "w_ih": rs.normal(size=(G, I)) * 0.6, "w_hh": rs.normal(size=(G, P)) * 0.6,
        "b_ih": rs.normal(size=G) if rng.random() < 0.75 else None,
        "b_hh": rs.normal(size=G) if rng.random() < 0.75 else None,
        "c0": rs.normal(size=(B, H)) if lstm else None,
        "w_hr": rs.normal(size=(P, H)) * 0.6 if variant == "lstm_proj" else None,
    }
    training = rng.random() < 0.7  # training: 0/1 zoneout masks; eval: the share p
    a["drop_h"] = (rs.random((B, P)) < 0.7) / 0.7 if training else None
    a["keep_h"] = (rs.random((T, B, P)) < 0.3) * 1.0 if training else np.full((T, B, P), 0.3)
    if lstm:
        a["keep_c"] = (rs.random((T, B, H)) < 0.4) * 1.0 if training else np.full((T, B, H), 0.4)
    lengths = [rng.randint(1, T) for _ in range(B)] if rng.random() < 0.6 else None
    if lengths is not None:
        a["x"][np.arange(T)[:, None] >= np.array(lengths)[None, :]] = np.nan  # never read
    return {"arrays": a, "lengths": lengths, "reverse": rng.random() < 0.5, "T": T, "B": B,
            "P": P, "H": H}


LSTM_ARGS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "drop_h", "keep_h",
             "keep_c")
GRU_ARGS = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "drop_h", "keep_h")
MASKS = ("drop_h", "keep_h", "keep_c")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("backend", "dtype"), CASES)
@pytest.mark.parametrize("seed", range(3))
def test_masked_op_matches_reference(backend, variant, seed, dtype):
    d = _case(variant, seed)
    a, lengths, reverse = d["arrays"], d["lengths"], d["reverse"]
    lstm = variant.startswith("lstm")
    rs = np.random.default_rng(100 + seed)
    dy = rs.normal(size=(d["T"], d["B"], d["P"]))
    dh_n, dc_n = rs.normal(size=(d["B"], d["P"])), rs.normal(size=(d["B"], d["H"]))

    common = {"lengths": None if lengths is None else np.array(lengths), "reverse": reverse}
    names = LSTM_ARGS if lstm else GRU_ARGS
    positional = [a[n] for n in names if n not in MASKS]
    masks = {n: a[n] for n in names if n in MASKS}
    if lstm:
        y_ref, finals_ref, cache = reference.lstm_masked_forward(*positional, **masks, **common)
        grads_ref = reference.lstm_masked_backward(dy, dh_n, dc_n, cache)
        saved_ref = {"c": cache.gates["c"], "c_tilde": cache.gates["c_tilde"]}
    else:
        y_ref, h_ref, cache = reference.gru_masked_forward(
            *positional, **masks, reset_after=variant == "gru", **common
        )
        finals_ref = (h_ref,)
        grads_ref = reference.gru_masked_backward(dy, dh_n, cache)
        saved_ref = {}

    def tensor(name):
        value = a[name]
        if value is None:
            return None
        t = torch.tensor(value, dtype=dtype)
        return t.requires_grad_(name not in MASKS)

    t = {name: tensor(name) for name in names}
    lengths_t = None if lengths is None else torch.tensor(lengths)
    probe = torch.zeros(d["T"], d["B"], d["P"], dtype=dtype, requires_grad=True)
    with backends.use_backend(backend):
        if lstm:
            y, h_n, c_n, _, c, c_tilde = ops_masked.lstm_masked(
                *(t[n] for n in names), lengths_t, probe, reverse
            )
            finals, saved = (h_n, c_n), {"c": c, "c_tilde": c_tilde}
        else:
            y, h_n, _ = ops_masked.gru_masked(
                *(t[n] for n in names), lengths_t, probe, reverse, variant == "gru"
            )
            finals, saved = (h_n,), {}
        cotangents = [torch.tensor(g, dtype=dtype) for g in (dy, dh_n, dc_n)]
        loss = sum((o * g).sum() for o, g in zip((y, *finals), cotangents, strict=False))
        loss.backward()

    tol, gtol = OUT_TOL[dtype], GRAD_TOL[dtype]
    assert_rel_close(y, y_ref, tol, "y")
    for state, ref in zip(finals, finals_ref, strict=True):
        assert_rel_close(state, ref, tol, "final state")
    for name, ref in saved_ref.items():
        assert_rel_close(saved[name], ref, tol, name)
    for name in names:
        if name in MASKS or t[name] is None:
            continue
        assert_rel_close(t[name].grad, grads_ref[name], gtol, f"d{name}")
    assert_rel_close(probe.grad, grads_ref["h"], gtol, "dh (probe)")


@pytest.mark.parametrize("variant", ["lstm_proj", "gru_reset_before"])
def test_masked_ops_pass_opcheck_and_gradgradcheck(variant):
    d = _case(variant, 1, small=True)
    a = d["arrays"]
    lstm = variant.startswith("lstm")
    names = LSTM_ARGS if lstm else GRU_ARGS
    args = [
        None if a[n] is None else torch.tensor(np.nan_to_num(a[n]), requires_grad=n not in MASKS)
        for n in names
    ]
    tail = [None, None, True] if lstm else [None, None, True, variant == "gru"]
    op = ops_masked.lstm_masked if lstm else ops_masked.gru_masked
    torch.library.opcheck(op, (*args, *tail))

    def outputs(*leaves):
        it = iter(leaves)
        full = [next(it) if isinstance(v, torch.Tensor) and v.requires_grad else v for v in args]
        return op(*full, *tail)[: 3 if lstm else 2]

    leaves = [v for v in args if isinstance(v, torch.Tensor) and v.requires_grad]
    assert torch.autograd.gradgradcheck(outputs, leaves)

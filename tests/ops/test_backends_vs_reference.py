"""Every backend vs the NumPy reference: outputs, final states, recorded gates and every
gradient, including the total ∂L/∂h_t of the gradient probe (oracle 3)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import rnnlab
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close, backend_cases
from rnnlab import ops, ops_ln, reference

CASES = backend_cases()
VARIANTS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "gru_reset_before", "lnlstm",
            "lngru"]
LN_NAMES = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "gamma_ih", "gamma_hh", "gamma_c",
            "beta_c"]


def _draw(variant: str, seed: int):
    rng = random.Random(f"{variant}-{seed}")
    T, B, I, H = rng.randint(1, 8), rng.randint(1, 4), rng.randint(1, 5), rng.randint(1, 6)
    P = rng.randint(1, H - 1) if variant == "lstm_proj" and H > 1 else H
    return {
        "T": T, "B": B, "I": I, "H": H, "P": P if variant == "lstm_proj" else H,
        "bias": rng.random() < 0.75,
        "lengths": [rng.randint(1, T) for _ in range(B)] if rng.random() < 0.6 else None,
        "reverse": rng.random() < 0.5,
    }


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("backend", "dtype"), CASES)
@pytest.mark.parametrize("seed", range(8))
def test_backend_matches_reference(backend, variant, seed, dtype):
    d = _draw(variant, seed)
    family = variant.split("_")[0]
    T, B, I, H, P = d["T"], d["B"], d["I"], d["H"], d["P"]
    G = {"rnn": 1, "lstm": 4, "gru": 3, "lnlstm": 4, "lngru": 3}[family] * H
    rs = np.random.default_rng(seed)
    arrays = {
        "x": rs.normal(size=(T, B, I)), "h0": rs.normal(size=(B, P)),
        "w_ih": rs.normal(size=(G, I)) * 0.6, "w_hh": rs.normal(size=(G, P)) * 0.6,
    }
    if family in ("lstm", "lnlstm"):
        arrays["c0"] = rs.normal(size=(B, H))
    if family in ("lnlstm", "lngru"):
        arrays["gamma_ih"], arrays["gamma_hh"] = 1 + rs.normal(size=(2, G)) * 0.3
    if family == "lnlstm":
        arrays["gamma_c"] = 1 + rs.normal(size=H) * 0.3
        if d["bias"]:
            arrays["beta_c"] = rs.normal(size=H) * 0.3
    if variant == "lstm_proj":
        arrays["w_hr"] = rs.normal(size=(P, H)) * 0.6
    if d["bias"]:
        arrays["b_ih"], arrays["b_hh"] = rs.normal(size=G), rs.normal(size=G)
    lengths = d["lengths"]
    if lengths is not None:
        arrays["x"][np.arange(T)[:, None] >= np.array(lengths)[None, :]] = np.nan  # never read
    dy = rs.normal(size=(T, B, P))
    dh_n = rs.normal(size=(B, P))
    dc_n = rs.normal(size=(B, H))

    # Reference, float64.
    common = {"lengths": None if lengths is None else np.array(lengths), "reverse": d["reverse"]}
    names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
    if family == "lnlstm":
        names = LN_NAMES
        y_ref, (h_ref, c_ref), cache = reference.lnlstm_forward(
            *(arrays.get(n) for n in names), **common
        )
        grads_ref = reference.lnlstm_backward(dy, dh_n, dc_n, cache)
        finals_ref = [h_ref, c_ref]
    elif family == "lngru":
        names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "gamma_ih", "gamma_hh"]
        y_ref, h_ref, cache = reference.lngru_forward(*(arrays.get(n) for n in names), **common)
        grads_ref = reference.lngru_backward(dy, dh_n, cache)
        finals_ref = [h_ref]
    elif family == "lstm":
        names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"]
        y_ref, (h_ref, c_ref), cache = reference.lstm_forward(
            *(arrays.get(n) for n in names), **common
        )
        grads_ref = reference.lstm_backward(dy, dh_n, dc_n, cache)
        finals_ref = [h_ref, c_ref]
    elif family == "gru":
        y_ref, h_ref, cache = reference.gru_forward(
            *(arrays.get(n) for n in names), reset_after=variant == "gru", **common
        )
        grads_ref = reference.gru_backward(dy, dh_n, cache)
        finals_ref = [h_ref]
    else:
        y_ref, h_ref, cache = reference.rnn_forward(
            *(arrays.get(n) for n in names), nonlinearity=variant.split("_")[1], **common
        )
        grads_ref = reference.rnn_backward(dy, dh_n, cache)
        finals_ref = [h_ref]

    # Backend, in dtype, through the op and autograd.
    t = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in arrays.items()}
    probe = torch.zeros(T, B, P, dtype=dtype, requires_grad=True)
    lens = None if lengths is None else torch.tensor(lengths)
    with rnnlab.use_backend(backend):
        if family in ("lstm", "lnlstm"):
            op = ops_ln.lnlstm if family == "lnlstm" else ops.lstm
            y, h, c, gates, cells = op(*(t.get(n) for n in names), lens, probe, d["reverse"])
            finals = [h, c]
            i, f, g, o = gates.split(H, dim=2)
            recorded = {"i": i, "f": f, "g": g, "o": o, "c": cells}
        elif family in ("gru", "lngru"):
            option = () if family == "lngru" else (variant == "gru",)
            op = ops_ln.lngru if family == "lngru" else ops.gru
            y, h, gates = op(*(t.get(n) for n in names), lens, probe, d["reverse"], *option)
            finals = [h]
            r, z, n, hn = gates.split(H, dim=2)
            recorded = {"r": r, "z": z, "n": n, "hn": hn}
        else:
            y, h, a = ops.rnn(
                *(t.get(n) for n in names), lens, probe, d["reverse"], variant == "rnn_relu"
            )
            finals = [h]
            recorded = {"a": a}
        loss = (y * torch.tensor(dy, dtype=dtype)).sum()
        loss = loss + (h * torch.tensor(dh_n, dtype=dtype)).sum()
        if family in ("lstm", "lnlstm"):
            loss = loss + (c * torch.tensor(dc_n, dtype=dtype)).sum()
        loss.backward()

    tol, gtol = OUT_TOL[dtype], GRAD_TOL[dtype]
    assert_rel_close(y, torch.from_numpy(y_ref), tol, "y")
    for k, (a, b) in enumerate(zip(finals, finals_ref, strict=True)):
        assert_rel_close(a, torch.from_numpy(b), tol, f"final state {k}")
    for name, value in cache.gates.items():
        assert_rel_close(recorded[name], torch.from_numpy(value), tol, f"gate {name}")
    for name, tensor in t.items():
        expected = torch.from_numpy(grads_ref[name])
        assert_rel_close(tensor.grad, expected, gtol, f"d{name}")
    assert_rel_close(probe.grad, torch.from_numpy(grads_ref["h"]), gtol, "total dL/dh_t")

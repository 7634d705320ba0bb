"""The plain ops on packed rows (x (N, I) as ``PackedSequence.data``, samples longest
first): every backend vs the NumPy reference run on the padded batch — outputs, final
states, saved gates, every gradient and the total ∂L/∂h_t — and the ops' schemas
(opcheck), the inference ops and the layers' use of them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
import rnnlab.nn as rnn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close, backend_cases
from rnnlab import backends, ops, reference
from rnnlab.backends._rows import row_layout

CASES = backend_cases()
VARIANTS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "gru_reset_before"]
GATES = {"lstm": "ifgo", "gru": "rzn"}


def _draw(variant: str, seed: int) -> dict:
    rng = random.Random(f"packed-{variant}-{seed}")
    T, B, I, H = rng.randint(1, 8), rng.randint(1, 5), rng.randint(1, 5), rng.randint(2, 6)
    lengths = sorted((rng.randint(1, T) for _ in range(B)), reverse=True)
    lengths[0] = T
    return {"T": T, "B": B, "I": I, "H": H, "P": rng.randint(1, H - 1) if "proj" in variant else H,
            "bias": rng.random() < 0.75, "lengths": lengths, "reverse": rng.random() < 0.5}


def _reference(variant: str, arrays: dict, d: dict, dy, dh_n, dc_n):
    """(y, finals, gates {name: (T, B, H)}, grads) of the NumPy reference, padded."""
    family = variant.split("_")[0]
    common = {"lengths": np.array(d["lengths"]), "reverse": d["reverse"]}
    names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
    if family == "lstm":
        names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"]
        y, (h, c), cache = reference.lstm_forward(*(arrays.get(n) for n in names), **common)
        return y, [h, c], cache.gates, reference.lstm_backward(dy, dh_n, dc_n, cache)
    if family == "gru":
        y, h, cache = reference.gru_forward(*(arrays.get(n) for n in names),
                                            reset_after=variant == "gru", **common)
        return y, [h], cache.gates, reference.gru_backward(dy, dh_n, cache)
    y, h, cache = reference.rnn_forward(*(arrays.get(n) for n in names),
                                        nonlinearity=variant.split("_")[1], **common)
    return y, [h], cache.gates, reference.rnn_backward(dy, dh_n, cache)


def _run(variant: str, t: dict, x_rows, lens, probe, reverse):
    """The packed op: (y, finals, {gate name: rows})."""
    family = variant.split("_")[0]
    H = t["w_hh"].shape[0] // {"rnn": 1, "lstm": 4, "gru": 3}[family]
    if family == "lstm":
        y, h, c, gates, cells = ops.lstm(x_rows, t["h0"], t["c0"], t["w_ih"], t["w_hh"],
                                         t.get("b_ih"), t.get("b_hh"), t.get("w_hr"), lens,
                                         probe, reverse)
        return y, [h, c], {**dict(zip("ifgo", gates.split(H, dim=-1), strict=True)), "c": cells}
    if family == "gru":
        y, h, gates = ops.gru(x_rows, t["h0"], t["w_ih"], t["w_hh"], t.get("b_ih"),
                              t.get("b_hh"), lens, probe, reverse, variant == "gru")
        return y, [h], dict(zip("rzn", gates.split(H, dim=-1)[:3], strict=True))
    y, h, a = ops.rnn(x_rows, t["h0"], t["w_ih"], t["w_hh"], t.get("b_ih"), t.get("b_hh"), lens,
                      probe, reverse, variant == "rnn_relu")
    return y, [h], {"a": a}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("backend", "dtype"), CASES)
@pytest.mark.parametrize("seed", range(6))
def test_packed_op_matches_reference(backend, variant, seed, dtype):
    d = _draw(variant, seed)
    family = variant.split("_")[0]
    T, B, I, H, P = d["T"], d["B"], d["I"], d["H"], d["P"]
    G = {"rnn": 1, "lstm": 4, "gru": 3}[family] * H
    rs = np.random.default_rng(seed)
    arrays = {"x": rs.normal(size=(T, B, I)), "h0": rs.normal(size=(B, P)),
              "w_ih": rs.normal(size=(G, I)) * 0.6, "w_hh": rs.normal(size=(G, P)) * 0.6}
    if family == "lstm":
        arrays["c0"] = rs.normal(size=(B, H))
    if variant == "lstm_proj":
        arrays["w_hr"] = rs.normal(size=(P, H)) * 0.6
    if d["bias"]:
        arrays["b_ih"], arrays["b_hh"] = rs.normal(size=G), rs.normal(size=G)
    valid = np.arange(T)[:, None] < np.array(d["lengths"])[None, :]
    dy = rs.normal(size=(T, B, P)) * valid[..., None]  # no gradient reaches a padding step
    dh_n, dc_n = rs.normal(size=(B, P)), rs.normal(size=(B, H))
    y_ref, finals_ref, gates_ref, grads_ref = _reference(variant, arrays, d, dy, dh_n, dc_n)

    lens = torch.tensor(d["lengths"])
    layout = row_layout(lens, torch.device("cpu"))

    def rows(a: np.ndarray) -> torch.Tensor:
        padded = torch.from_numpy(np.ascontiguousarray(a))
        return padded.reshape(T * B, -1).index_select(0, layout.index)

    t = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in arrays.items()}
    x_rows = rows(arrays["x"]).to(dtype).requires_grad_(True)
    probe = torch.zeros(x_rows.shape[0], P, dtype=dtype, requires_grad=True)
    with rnnlab.use_backend(backend):
        y, finals, recorded = _run(variant, t, x_rows, lens, probe, d["reverse"])
        loss = (y * rows(dy).to(dtype)).sum() + (finals[0] * torch.tensor(dh_n, dtype=dtype)).sum()
        if family == "lstm":
            loss = loss + (finals[1] * torch.tensor(dc_n, dtype=dtype)).sum()
        loss.backward()

    tol, gtol = OUT_TOL[dtype], GRAD_TOL[dtype]
    assert y.shape == (int(lens.sum()), P)
    assert_rel_close(y, rows(y_ref), tol, "y")
    for k, (a, b) in enumerate(zip(finals, finals_ref, strict=True)):
        assert_rel_close(a, torch.from_numpy(b), tol, f"final state {k}")
    for name, value in recorded.items():
        assert_rel_close(value, rows(gates_ref[name]), tol, f"gate {name}")
    assert_rel_close(x_rows.grad, rows(grads_ref["x"]), gtol, "dx")
    for name, tensor in t.items():
        if name != "x":
            assert_rel_close(tensor.grad, torch.from_numpy(grads_ref[name]), gtol, f"d{name}")
    assert_rel_close(probe.grad, rows(grads_ref["h"]), gtol, "total dL/dh_t")


def _packed_args(family: str, *, proj=False, variant=False, reverse=False, probe=False):
    g = torch.Generator().manual_seed(3)
    lens = torch.tensor([5, 4, 4, 2])
    N, B, I, H = int(lens.sum()), 4, 3, 5
    P = 2 if proj else H

    def r(*shape):
        return (torch.randn(shape, generator=g) * 0.5).requires_grad_(True)

    G = {"rnn": 1, "lstm": 4, "gru": 3}[family] * H
    h_probe = r(N, P) if probe else None
    if family == "lstm":
        return (r(N, I), r(B, P), r(B, H), r(G, I), r(G, P), r(G), r(G),
                r(P, H) if proj else None, lens, h_probe, reverse)
    return (r(N, I), r(B, H), r(G, I), r(G, H), r(G), r(G), lens, h_probe, reverse, variant)


PACKED_CASES = [("rnn", {}), ("rnn", {"reverse": True, "probe": True}), ("lstm", {}),
                ("lstm", {"proj": True, "reverse": True, "probe": True}), ("gru", {}),
                ("gru", {"variant": True, "reverse": True})]


@pytest.mark.parametrize(("family", "kw"), PACKED_CASES)
def test_opcheck_on_packed_rows(family, kw):
    """The schema, fake (its (N, ·) shapes) and autograd registrations hold for rows too."""
    op = {"rnn": ops.rnn, "lstm": ops.lstm, "gru": ops.gru}[family]
    torch.library.opcheck(op, _packed_args(family, **kw))


@pytest.mark.parametrize(("family", "kw"), [c for c in PACKED_CASES if "probe" not in c[1]])
@pytest.mark.parametrize("backend", [
    name for name in sorted(rnnlab.available_backends())
    if backends.can_run(name, torch.device("cpu"), torch.float32)
])
def test_inference_op_on_packed_rows(family, kw, backend):
    args = [a.detach() if isinstance(a, torch.Tensor) else a for a in _packed_args(family, **kw)]
    probe_at = 9 if family == "lstm" else 7
    infer = {"rnn": ops.rnn_infer, "lstm": ops.lstm_infer, "gru": ops.gru_infer}[family]
    full = {"rnn": ops.rnn, "lstm": ops.lstm, "gru": ops.gru}[family]
    with rnnlab.use_backend(backend):
        got = infer(*args[:probe_at], *args[probe_at + 1 :])
        want = full(*args)[: len(got)]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_layers_keep_packed_input_in_rows(monkeypatch):
    """A PackedSequence reaches the ops as its rows (no padded copy of any size T·B), and
    the model is torch.nn's: same outputs in the caller's batch order."""
    seen = []
    real = ops.lstm

    def spy(*args):
        seen.append(tuple(args[0].shape))
        return real(*args)

    monkeypatch.setattr(ops, "lstm", spy)
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    ours = rnn.LSTM(3, 4, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(6, 3, 3, requires_grad=True)
    packed = pack_padded_sequence(x, torch.tensor([2, 6, 4]), enforce_sorted=False)
    out, (h, c) = ours(packed)
    want, (h_t, c_t) = theirs(packed)
    assert seen == [(12, 3), (12, 3), (12, 8), (12, 8)]
    torch.testing.assert_close(out.data, want.data)
    torch.testing.assert_close(h, h_t)
    torch.testing.assert_close(c, c_t)


@pytest.mark.parametrize("family", ["lstm"])
def test_double_backward_on_packed_rows(family):
    """A recorded backward of a packed call (its padded recomputation, shared by the
    families: the LSTM's, whose state bundle must stay as it is): gradgradcheck in
    float64 on the outputs that carry gradients."""
    args = [a.detach().double().requires_grad_(a.requires_grad)
            if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in _packed_args(family, reverse=True)]
    op = {"rnn": ops.rnn, "lstm": ops.lstm, "gru": ops.gru}[family]
    outputs = 3 if family == "lstm" else 2  # y, h_n (, c_n)
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]

    def differentiable(*values):
        it = iter(values)
        full = [next(it) if isinstance(a, torch.Tensor) and a.requires_grad else a
                for a in args]
        return op(*full)[:outputs]

    assert torch.autograd.gradgradcheck(differentiable, inputs)

"""The layer-normalised LSTM reference against torch autograd of an independent float64
transcription (torch.nn.functional.layer_norm), and against central differences.

The loss is L = Σ dy ⊙ y + Σ dh_n ⊙ h_n + Σ dc_n ⊙ c_n with random dy, dh_n, dc_n;
∂L/∂h_t is the gradient of a zero probe added to h_t after every valid step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnlab.reference import lnlstm_backward, lnlstm_forward
from rnnlab.reference.lnlstm import LN_EPS

LENGTHS = (2, 5, 1)  # B = 3, T = 5: a shorter span, a full one, a single step
NAMES = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "gamma_ih", "gamma_hh", "gamma_c",
         "beta_c")


def torch_transcription(p, probe, lengths, reverse):
    """y, h_n, c_n of Haste's LayerNormLSTM equations (gate order i, f, g, o), in torch."""
    x = p["x"]
    T, B, _ = x.shape
    H = p["h0"].shape[1]
    valid = torch.ones(T, B, 1, dtype=torch.bool)
    if lengths is not None:
        valid = (torch.arange(T)[:, None] < torch.tensor(lengths)[None, :])[:, :, None]
    bias = sum(p[k] for k in ("b_ih", "b_hh") if k in p)
    h, c, ys = p["h0"], p["c0"], [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        a = (
            F.layer_norm(x[t] @ p["w_ih"].T, (4 * H,), p["gamma_ih"], None, LN_EPS)
            + F.layer_norm(h @ p["w_hh"].T, (4 * H,), p["gamma_hh"], None, LN_EPS)
            + bias
        )
        i, f, g, o = a.chunk(4, dim=1)
        c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        n = F.layer_norm(c_t, (H,), p["gamma_c"], p.get("beta_c"), LN_EPS)
        h_t = torch.sigmoid(o) * torch.tanh(n) + probe[t]
        h, c = torch.where(valid[t], h_t, h), torch.where(valid[t], c_t, c)
        ys[t] = torch.where(valid[t], h, 0.0)
    return torch.stack(ys), h, c


def _arrays(rng, T, B, I, H, bias):
    return {
        "x": rng.normal(size=(T, B, I)),
        "h0": rng.normal(size=(B, H)),
        "c0": rng.normal(size=(B, H)),
        "w_ih": rng.normal(size=(4 * H, I)),
        "w_hh": rng.normal(size=(4 * H, H)),
        "b_ih": rng.normal(size=4 * H) if bias else None,
        "b_hh": rng.normal(size=4 * H) if bias else None,
        "gamma_ih": 1 + 0.3 * rng.normal(size=4 * H),
        "gamma_hh": 1 + 0.3 * rng.normal(size=4 * H),
        "gamma_c": 1 + 0.3 * rng.normal(size=H),
        "beta_c": 0.3 * rng.normal(size=H) if bias else None,
    }


@pytest.mark.parametrize(
    "lengths, reverse, bias", [(None, False, True), (LENGTHS, True, False)]
)
def test_reference_matches_torch_autograd(lengths, reverse, bias):
    rng = np.random.default_rng(7)
    T, B, I, H = 5, 3, 4, 3
    arrays = _arrays(rng, T, B, I, H, bias)
    dy, dh_n, dc_n = (rng.normal(size=s) for s in ((T, B, H), (B, H), (B, H)))
    y, (h_n, c_n), cache = lnlstm_forward(**arrays, lengths=lengths, reverse=reverse)
    grads = lnlstm_backward(dy, dh_n, dc_n, cache)

    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items() if v is not None}
    probe = torch.zeros(T, B, H, dtype=torch.float64, requires_grad=True)
    y_t, h_t, c_t = torch_transcription(leaves, probe, lengths, reverse)
    for ours, theirs in ((y, y_t), (h_n, h_t), (c_n, c_t)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=0, atol=1e-12)
    loss = sum((a * torch.tensor(d)).sum() for a, d in ((y_t, dy), (h_t, dh_n), (c_t, dc_n)))
    loss.backward()
    assert set(leaves) == {k for k in NAMES if grads[k] is not None}
    for name, leaf in leaves.items():
        np.testing.assert_allclose(grads[name], leaf.grad.numpy(), rtol=0, atol=1e-11,
                                   err_msg=name)
    np.testing.assert_allclose(grads["h"], probe.grad.numpy(), rtol=0, atol=1e-11)


def test_reference_matches_central_differences():
    rng = np.random.default_rng(3)
    T, B, I, H = 4, 2, 2, 2
    arrays = _arrays(rng, T, B, I, H, bias=True)
    dy, dh_n, dc_n = (rng.normal(size=s) for s in ((T, B, H), (B, H), (B, H)))
    options = {"lengths": (4, 2), "reverse": True}

    def loss(values):
        y, (h_n, c_n), _ = lnlstm_forward(**values, **options)
        return float((y * dy).sum() + (h_n * dh_n).sum() + (c_n * dc_n).sum())

    grads = lnlstm_backward(dy, dh_n, dc_n, lnlstm_forward(**arrays, **options)[2])
    eps = 1e-6
    for name in NAMES:
        for index in np.ndindex(arrays[name].shape):
            shifted = {k: v.copy() for k, v in arrays.items()}
            shifted[name][index] += eps
            up = loss(shifted)
            shifted[name][index] -= 2 * eps
            numeric = (up - loss(shifted)) / (2 * eps)
            assert abs(numeric - grads[name][index]) < 1e-7, (name, index)

"""The layer-normalised GRU reference against torch autograd of an independent float64
transcription (torch.nn.functional.layer_norm, Haste's LayerNormGRU equations), and
against central differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnlab.reference import lngru_backward, lngru_forward
from rnnlab.reference.lnlstm import LN_EPS

NAMES = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "gamma_ih", "gamma_hh")


def torch_transcription(p, probe, lengths, reverse):
    x = p["x"]
    T, B, _ = x.shape
    H = p["h0"].shape[1]
    valid = torch.ones(T, B, 1, dtype=torch.bool)
    if lengths is not None:
        valid = (torch.arange(T)[:, None] < torch.tensor(lengths)[None, :])[:, :, None]
    h, ys = p["h0"], [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        u = F.layer_norm(x[t] @ p["w_ih"].T, (3 * H,), p["gamma_ih"], p.get("b_ih"), LN_EPS)
        v = F.layer_norm(h @ p["w_hh"].T, (3 * H,), p["gamma_hh"], p.get("b_hh"), LN_EPS)
        r, z = torch.sigmoid(u[:, :2 * H] + v[:, :2 * H]).chunk(2, dim=1)
        n = torch.tanh(u[:, 2 * H:] + r * v[:, 2 * H:])
        h = torch.where(valid[t], (1 - z) * n + z * h + probe[t], h)
        ys[t] = torch.where(valid[t], h, 0.0)
    return torch.stack(ys), h


def _arrays(rng, T, B, I, H, bias):
    return {
        "x": rng.normal(size=(T, B, I)), "h0": rng.normal(size=(B, H)),
        "w_ih": rng.normal(size=(3 * H, I)), "w_hh": rng.normal(size=(3 * H, H)),
        "b_ih": rng.normal(size=3 * H) if bias else None,
        "b_hh": rng.normal(size=3 * H) if bias else None,
        "gamma_ih": 1 + 0.3 * rng.normal(size=3 * H),
        "gamma_hh": 1 + 0.3 * rng.normal(size=3 * H),
    }


@pytest.mark.parametrize("lengths, reverse, bias", [(None, False, True), ((2, 5, 1), True, False)])
def test_reference_matches_torch_autograd(lengths, reverse, bias):
    rng = np.random.default_rng(7)
    T, B, I, H = 5, 3, 4, 3
    arrays = _arrays(rng, T, B, I, H, bias)
    dy, dh_n = rng.normal(size=(T, B, H)), rng.normal(size=(B, H))
    y, h_n, cache = lngru_forward(**arrays, lengths=lengths, reverse=reverse)
    grads = lngru_backward(dy, dh_n, cache)
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items() if v is not None}
    probe = torch.zeros(T, B, H, dtype=torch.float64, requires_grad=True)
    y_t, h_t = torch_transcription(leaves, probe, lengths, reverse)
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_n, h_t.detach().numpy(), rtol=0, atol=1e-12)
    ((y_t * torch.tensor(dy)).sum() + (h_t * torch.tensor(dh_n)).sum()).backward()
    assert set(leaves) == {k for k in NAMES if grads[k] is not None}
    for name, leaf in leaves.items():
        np.testing.assert_allclose(grads[name], leaf.grad.numpy(), rtol=0, atol=1e-11,
                                   err_msg=name)
    np.testing.assert_allclose(grads["h"], probe.grad.numpy(), rtol=0, atol=1e-11)


def test_reference_matches_central_differences():
    rng = np.random.default_rng(3)
    T, B, I, H = 4, 2, 2, 2
    arrays = _arrays(rng, T, B, I, H, bias=True)
    dy, dh_n = rng.normal(size=(T, B, H)), rng.normal(size=(B, H))
    options = {"lengths": (4, 2), "reverse": True}

    def loss(values):
        y, h_n, _ = lngru_forward(**values, **options)
        return float((y * dy).sum() + (h_n * dh_n).sum())

    grads = lngru_backward(dy, dh_n, lngru_forward(**arrays, **options)[2])
    eps = 1e-6
    for name in NAMES:
        for index in np.ndindex(arrays[name].shape):
            shifted = {k: v.copy() for k, v in arrays.items()}
            shifted[name][index] += eps
            up = loss(shifted)
            shifted[name][index] -= 2 * eps
            assert abs((up - loss(shifted)) / (2 * eps) - grads[name][index]) < 1e-7, (name, index)

"""The minGRU/minLSTM references against torch autograd of an independent float64
transcription, and against central differences.

The loss is L = Σ dy ⊙ y + Σ dh_n ⊙ h_n with random dy, dh_n; ∂L/∂h_t is the gradient of
a zero probe added to h_t after every valid step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnlab.reference import (
    mingru_backward,
    mingru_forward,
    minlstm_backward,
    minlstm_forward,
)

REFERENCE = {
    "mingru": (mingru_forward, mingru_backward, 2),
    "minlstm": (minlstm_forward, minlstm_backward, 3),
}
LENGTHS = (2, 5, 1)  # B = 3, T = 5: a shorter span, a full one, a single step


def _candidate(family, x_t, w_ih, b_ih, h):
    """(a_t, b_t) of h_t = a_t ⊙ h_{t-1} + b_t, from the paper's equations, in torch."""
    u = x_t @ w_ih.T + (0.0 if b_ih is None else b_ih)
    if family == "mingru":
        z, h_tilde = u.chunk(2, dim=-1)
        z = torch.sigmoid(z)
        return (1 - z) * h + z * h_tilde
    f, i, h_tilde = u.chunk(3, dim=-1)
    f, i = torch.sigmoid(f), torch.sigmoid(i)
    return f / (f + i) * h + i / (f + i) * h_tilde


def torch_transcription(family, x, h0, w_ih, b_ih, probe, lengths, reverse):
    T, B, _ = x.shape
    valid = torch.ones(T, B, 1, dtype=torch.bool)
    if lengths is not None:
        valid = (torch.arange(T)[:, None] < torch.tensor(lengths)[None, :])[:, :, None]
    h, ys = h0, [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        h = torch.where(valid[t], _candidate(family, x[t], w_ih, b_ih, h) + probe[t], h)
        ys[t] = torch.where(valid[t], h, 0.0)
    return torch.stack(ys), h


@pytest.mark.parametrize("family", sorted(REFERENCE))
@pytest.mark.parametrize(
    "lengths, reverse, bias", [(None, False, True), (LENGTHS, False, False), (LENGTHS, True, True)]
)
def test_reference_matches_torch_autograd(family, lengths, reverse, bias):
    forward, backward, G = REFERENCE[family]
    rng = np.random.default_rng(7)
    T, B, I, H = 5, 3, 4, 6
    arrays = {
        "x": rng.normal(size=(T, B, I)),
        "h0": rng.normal(size=(B, H)),
        "w_ih": 1.5 * rng.normal(size=(G * H, I)),
        "b_ih": rng.normal(size=G * H) if bias else None,
    }
    dy, dh_n = rng.normal(size=(T, B, H)), rng.normal(size=(B, H))
    y, h_n, cache = forward(**arrays, lengths=lengths, reverse=reverse)
    grads = backward(dy, dh_n, cache)

    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items() if v is not None}
    probe = torch.zeros(T, B, H, dtype=torch.float64, requires_grad=True)
    y_t, h_t = torch_transcription(
        family, leaves["x"], leaves["h0"], leaves["w_ih"], leaves.get("b_ih"), probe,
        lengths, reverse,
    )
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_n, h_t.detach().numpy(), rtol=0, atol=1e-12)
    loss = (y_t * torch.tensor(dy)).sum() + (h_t * torch.tensor(dh_n)).sum()
    loss.backward()
    for name, leaf in leaves.items():
        np.testing.assert_allclose(grads[name], leaf.grad.numpy(), rtol=0, atol=1e-12,
                                   err_msg=name)
    np.testing.assert_allclose(grads["h"], probe.grad.numpy(), rtol=0, atol=1e-12)
    assert (grads["b_ih"] is None) == (not bias)


@pytest.mark.parametrize("family", sorted(REFERENCE))
def test_reference_matches_central_differences(family):
    forward, backward, G = REFERENCE[family]
    rng = np.random.default_rng(3)
    T, B, I, H = 4, 2, 3, 3
    x, h0 = rng.normal(size=(T, B, I)), rng.normal(size=(B, H))
    w_ih, b_ih = rng.normal(size=(G * H, I)), rng.normal(size=G * H)
    dy, dh_n = rng.normal(size=(T, B, H)), rng.normal(size=(B, H))

    def loss(w, b):
        y, h_n, _ = forward(x, h0, w, b, lengths=(4, 2), reverse=True)
        return float((y * dy).sum() + (h_n * dh_n).sum())

    grads = backward(dy, dh_n, forward(x, h0, w_ih, b_ih, lengths=(4, 2), reverse=True)[2])
    eps = 1e-6
    for index in np.ndindex(w_ih.shape):
        step = np.zeros_like(w_ih)
        step[index] = eps
        numeric = (loss(w_ih + step, b_ih) - loss(w_ih - step, b_ih)) / (2 * eps)
        assert abs(numeric - grads["w_ih"][index]) < 1e-7, index
    for k in range(b_ih.size):
        step = np.zeros_like(b_ih)
        step[k] = eps
        numeric = (loss(w_ih, b_ih + step) - loss(w_ih, b_ih - step)) / (2 * eps)
        assert abs(numeric - grads["b_ih"][k]) < 1e-7, k


@pytest.mark.parametrize("family", REFERENCE)
def test_bad_arguments_name_the_argument_and_its_shape(family):
    forward, _, blocks = REFERENCE[family]
    good = {"x": np.zeros((2, 1, 3)), "h0": np.zeros((1, 2)), "w_ih": np.zeros((2 * blocks, 3))}
    message = (rf"w_ih must be a 2-D array of shape \({blocks}H, I\), its rows {blocks} gate "
               r"blocks of H; got shape \(5, 3\)")
    with pytest.raises(ValueError, match=message):
        forward(**{**good, "w_ih": np.zeros((5, 3))})
    with pytest.raises(ValueError, match=rf"b_ih must have shape \({blocks}H,\) = "
                                         rf"\({2 * blocks},\); got shape \(3,\)"):
        forward(**good, b_ih=np.zeros(3))
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, H\) = \(1, 2\)"):
        forward(**{**good, "h0": np.zeros((1, 3))})

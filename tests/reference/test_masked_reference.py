"""The masked reference (recurrent dropout, zoneout) against central differences, and
with its masks off against the plain reference (float64, tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.reference import (
    gru_backward,
    gru_forward,
    gru_masked_backward,
    gru_masked_forward,
    lstm_backward,
    lstm_forward,
    lstm_masked_backward,
    lstm_masked_forward,
)

T, B, I, H, P = 4, 3, 2, 3, 2
LENGTHS = np.array([2, 4, 1])


def _inputs(cell: str, rng) -> tuple[dict, dict]:
    """(weights and states, masks) of a cell: the masks mix dropped/kept units and the
    fractional shares of eval."""
    out = P if cell == "lstm_proj" else H
    G = 4 if cell.startswith("lstm") else 3
    args = {
        "x": rng.normal(size=(T, B, I)), "h0": 0.5 * rng.normal(size=(B, out)),
        "w_ih": 0.6 * rng.normal(size=(G * H, I)), "w_hh": 0.6 * rng.normal(size=(G * H, out)),
        "b_ih": 0.3 * rng.normal(size=G * H), "b_hh": 0.3 * rng.normal(size=G * H),
    }
    masks = {
        "drop_h": rng.choice([0.0, 1.5, 1.0], size=(B, out)),
        "keep_h": rng.choice([0.0, 1.0, 0.3], size=(T, B, out)),
    }
    if cell.startswith("lstm"):
        args["c0"] = 0.5 * rng.normal(size=(B, H))
        args["w_hr"] = 0.6 * rng.normal(size=(P, H)) if cell == "lstm_proj" else None
        masks["keep_c"] = rng.choice([0.0, 1.0, 0.6], size=(T, B, H))
    return args, masks


def _run(cell, args, masks, lengths, reverse):
    """(y, finals, cache, backward) of the masked reference."""
    common = {**masks, "lengths": lengths, "reverse": reverse}
    if cell.startswith("lstm"):
        names = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")
        y, finals, cache = lstm_masked_forward(*(args[n] for n in names), **common)
        return y, finals, cache, lstm_masked_backward
    names = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")
    y, h_n, cache = gru_masked_forward(
        *(args[n] for n in names), reset_after=cell == "gru", **common
    )
    return y, (h_n,), cache, gru_masked_backward


def _central_difference(f, array, eps=1e-6):
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


@pytest.mark.parametrize(("lengths", "reverse"), [(None, False), (LENGTHS, True)],
                         ids=["full", "lengths-reverse"])
@pytest.mark.parametrize("cell", ["lstm", "lstm_proj", "gru", "gru_reset_before"])
def test_masked_backward_matches_central_differences(cell, lengths, reverse):
    rng = np.random.default_rng(3)
    args, masks = _inputs(cell, rng)
    y, finals, cache, backward = _run(cell, args, masks, lengths, reverse)
    dy = rng.normal(size=y.shape)
    dfinals = [rng.normal(size=s.shape) for s in finals]
    grads = backward(dy, *dfinals, cache)

    def loss():
        y, finals, _, _ = _run(cell, args, masks, lengths, reverse)
        states = sum(np.sum(d * s) for d, s in zip(dfinals, finals, strict=True))
        return float(np.sum(dy * y) + states)

    for name, value in args.items():
        if value is None:
            assert grads[name] is None, name
            continue
        numeric = _central_difference(loss, value)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("cell", ["lstm_proj", "gru_reset_before"])
def test_masks_off_is_the_plain_reference(cell):
    """d = 1 and k = 0 (the masks absent) give the plain cell's outputs and gradients."""
    rng = np.random.default_rng(4)
    args, _ = _inputs(cell, rng)
    y, finals, cache, backward = _run(cell, args, {}, LENGTHS, True)
    common = {"lengths": LENGTHS, "reverse": True}
    if cell.startswith("lstm"):
        names = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")
        y_ref, finals_ref, cache_ref = lstm_forward(*(args[n] for n in names), **common)
        plain_backward = lstm_backward
    else:
        names = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")
        y_ref, h_ref, cache_ref = gru_forward(*(args[n] for n in names), reset_after=False,
                                              **common)
        finals_ref, plain_backward = (h_ref,), gru_backward
    np.testing.assert_array_equal(y, y_ref)
    for state, ref in zip(finals, finals_ref, strict=True):
        np.testing.assert_array_equal(state, ref)
    dy = rng.normal(size=y.shape)
    dfinals = [rng.normal(size=s.shape) for s in finals]
    grads, grads_ref = backward(dy, *dfinals, cache), plain_backward(dy, *dfinals, cache_ref)
    for name, ref in grads_ref.items():
        if ref is not None:
            np.testing.assert_allclose(grads[name], ref, rtol=1e-13, atol=1e-14, err_msg=name)

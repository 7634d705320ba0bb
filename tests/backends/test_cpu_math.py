"""The cpu backend's activation functions: float32 approximation error against float64,
exact libm in float64, and vectorised code for the gate loops."""

from __future__ import annotations

import platform
import re

import numpy as np
import pytest
from numba import njit

from rnnlab.backends.cpu import _math

GRID32 = np.concatenate(
    [
        np.linspace(-100, 100, 400_001),
        np.linspace(-6, 6, 400_001),
        np.array([-1e30, -88.7, -87.0, -1e-30, 0.0, 1e-30, 88.0, 88.8, 1e30]),
    ]
).astype(np.float32)


def _run(fn, x):
    out = np.empty_like(x)
    fn(x, out)
    return out


def _sigmoid64(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize(
    ("fn", "exact", "abs_tol"),
    [(_math.apply_sigmoid, _sigmoid64, 1.5e-7), (_math.apply_tanh, np.tanh, 3e-7)],
    ids=["sigmoid", "tanh"],
)
def test_float32_approximation_error_against_float64(fn, exact, abs_tol):
    got = _run(fn, GRID32).astype(np.float64)
    want = exact(GRID32.astype(np.float64))
    err = np.abs(got - want)
    assert np.isfinite(got).all()
    assert err.max() <= abs_tol, f"max abs error {err.max():.3g}"
    big = np.abs(want) > 1e-2
    rel = (err[big] / np.abs(want[big])).max()
    assert rel <= 1e-5, f"max relative error {rel:.3g} where |f| > 1e-2"
    assert ((got >= -1) & (got <= 1)).all()  # stays in range, saturates at the ends


def test_float32_sigmoid_keeps_relative_accuracy_in_the_tail():
    x = np.linspace(-80, -5, 10_001).astype(np.float32)
    got = _run(_math.apply_sigmoid, x).astype(np.float64)
    want = _sigmoid64(x.astype(np.float64))
    assert (np.abs(got - want) / want).max() <= 1e-5


@pytest.mark.parametrize(
    ("fn", "exact"), [(_math.apply_sigmoid, _sigmoid64), (_math.apply_tanh, np.tanh)],
    ids=["sigmoid", "tanh"],
)
def test_float64_uses_exact_functions(fn, exact):
    x = np.linspace(-800, 800, 100_001)
    got = _run(fn, x)
    want = exact(x)
    assert np.abs(got - want).max() <= 4e-16
    assert np.array_equal(_run(fn, np.array([-1000.0, 1000.0])), exact(np.array([-1000.0, 1e3])))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 vector check")
def test_gate_loop_is_vectorised():
    """A loop of the float32 activations compiles to SIMD code: no scalar libm calls, and
    e^x's exponent stays in 32-bit integer vectors (a vector of int64 has no conversion to
    float on AVX2; LLVM converted it lane by lane, 4x slower, when Numba widened it)."""

    @njit(fastmath=_math.FASTMATH, error_model="numpy")
    def lstm_like(a, out):
        for j in range(a.shape[0]):
            out[j] = _math.sigmoid(a[j]) * _math.tanh(a[j])

    x = np.linspace(-3, 3, 64).astype(np.float32)
    out = np.empty_like(x)
    lstm_like(x, out)
    ir = lstm_like.inspect_llvm(lstm_like.signatures[0])
    assert re.search(r"<(8|16) x float>", ir), "the activation loop was not vectorised"
    assert not re.search(r"call [^@]*@(expf|tanhf|floorf)\b", ir)
    assert re.search(r"fptosi <(8|16) x float> %\S+ to <(8|16) x i32>", ir)
    assert not re.search(r"(sitofp|fptosi|trunc|sext) <\d+ x i64>", ir), "int64 lanes in e^x"

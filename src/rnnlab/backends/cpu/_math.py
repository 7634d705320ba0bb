"""Activation functions for the compiled kernels, chosen by dtype at compile time.

float64 uses the exact libm functions (the backend must match the float64 reference
to 1e-10). float32 uses an exponential written as plain arithmetic — range reduction
x = k·ln 2 + r, a degree-7 Taylor polynomial for e^r (|r| ≤ ln2/2, truncation error
< 1e-8 relative) and 2^k built from its exponent bits — so that LLVM vectorises the
gate loops (scalar ``expf`` calls do not vectorise on this stack). Its error against
float64 is held in tests/backends/test_cpu_math.py.

    σ(x)    = 1 / (1 + e^{-x})
    tanh(x) = 1 - 2 / (1 + e^{2x})
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from rnnlab.backends.cpu._jit import kernel

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # Cody–Waite split of ln 2: hi has few mantissa bits
_LN2_LO = np.float32(-2.12194440e-4)
_ROUND_SHIFT = np.float32(126.5)  # x·log2(e) + 126.5 > 0 for every x ≥ _X_MIN
_ONE = np.float32(1.0)
_TWO = np.float32(2.0)
_X_MIN = np.float32(-87.0)  # e^x stays a normal float32 inside [_X_MIN, _X_MAX]
_X_MAX = np.float32(88.0)
_C2 = np.float32(1 / 2)
_C3 = np.float32(1 / 6)
_C4 = np.float32(1 / 24)
_C5 = np.float32(1 / 120)
_C6 = np.float32(1 / 720)
_C7 = np.float32(1 / 5040)


# n = k + 126, the biased k of e^x = 2^k · e^r: both helpers work on n in 32-bit integer
# arithmetic. Numba would widen int32 arithmetic to int64, and a vector of int64 has no
# conversion to float on AVX2: LLVM then converted lane by lane, which made e^x 4x slower.
_I32 = ir.IntType(32)
_BIAS = ir.Constant(_I32, 126)


@intrinsic
def _k_from_biased(typingctx, n):
    """k = n - 126 as a float32 (exact; subtracted as integers, so that fast-math cannot
    reassociate it into the Cody–Waite products)."""

    def codegen(context, builder, signature, args):
        return builder.sitofp(builder.sub(args[0], _BIAS), ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _power_of_two(typingctx, n):
    """2^k = 2^(n - 126) as a float32 (1 ≤ n ≤ 253): the exponent field set to n + 1."""

    def codegen(context, builder, signature, args):
        exponent = builder.add(args[0], ir.Constant(_I32, 1))
        return builder.bitcast(builder.shl(exponent, ir.Constant(_I32, 23)), ir.FloatType())

    return types.float32(types.int32), codegen


@njit(inline="always", fastmath=True, error_model="numpy")
def _exp32(x):
    """e^x for float32, ~2 ulp, branch-free (clamped to the normal range)."""
    x = min(max(x, _X_MIN), _X_MAX)
    # k = round(x / ln 2), held as n = k + 126 > 0; truncation is floor there since the
    # argument is positive (a libm floor call would stop vectorisation).
    n = np.int32(x * _LOG2E + _ROUND_SHIFT)
    k = _k_from_biased(n)
    r = x - k * _LN2_HI - k * _LN2_LO
    p = _C6 + r * _C7
    p = _C5 + r * p
    p = _C4 + r * p
    p = _C3 + r * p
    p = _C2 + r * p
    p = _ONE + r * p
    p = _ONE + r * p
    return p * _power_of_two(n)


def exp(x):
    """e^x, for a float32 or float64 scalar inside compiled code (float32: clamped to
    [e^-87, e^88], the normal range)."""
    raise NotImplementedError("only callable from Numba-compiled code")


def sigmoid(x):
    """σ(x), for a float32 or float64 scalar inside compiled code."""
    raise NotImplementedError("only callable from Numba-compiled code")


def tanh(x):
    """tanh(x), for a float32 or float64 scalar inside compiled code."""
    raise NotImplementedError("only callable from Numba-compiled code")


def one(arr):
    """The constant 1 in the dtype of ``arr`` (integer literals would promote to float64)."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(exp, inline="always", fastmath=True)
def _exp(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    if x == types.float64:
        return lambda x: math.exp(x)
    return None


@overload(sigmoid, inline="always", fastmath=True)
def _sigmoid(x):
    if x == types.float32:
        return lambda x: _ONE / (_ONE + _exp32(-x))
    if x == types.float64:
        return lambda x: 1.0 / (1.0 + math.exp(-x))
    return None


@overload(tanh, inline="always", fastmath=True)
def _tanh(x):
    if x == types.float32:
        return lambda x: _ONE - _TWO / (_ONE + _exp32(_TWO * x))
    if x == types.float64:
        return lambda x: math.tanh(x)
    return None


@overload(one, inline="always")
def _one(arr):
    value = np.dtype(str(arr.dtype)).type(1)
    return lambda arr: value


# Options of every compiled kernel: no NaN/Inf assumptions (σ of a large negative
# float64 goes through e^{+inf}), and NumPy's error model, without which each division
# carries a zero check that stops vectorisation.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
KERNEL_OPTIONS = {"fastmath": FASTMATH, "error_model": "numpy", "nogil": True}


@kernel(**KERNEL_OPTIONS)
def apply_sigmoid(x, out):
    """out[:] = σ(x[:]) for 1-D arrays (for tests and for inspecting the generated code)."""
    for j in range(x.shape[0]):
        out[j] = sigmoid(x[j])


@kernel(**KERNEL_OPTIONS)
def apply_tanh(x, out):
    """out[:] = tanh(x[:]) for 1-D arrays (for tests and for inspecting the generated code)."""
    for j in range(x.shape[0]):
        out[j] = tanh(x[j])

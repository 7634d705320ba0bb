"""Test helpers: per-dtype tolerances, a relative comparison, and a guard that
makes torch's own recurrent kernels unusable while rnnlab runs."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

# Tolerances (relative to the largest magnitude of the expected tensor), per dtype.
OUT_TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
GRAD_TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
DTYPES = {"f64": torch.float64, "f32": torch.float32}


def backend_cases() -> list:
    """(backend, dtype) parameters, ids ``<backend>-f64`` / ``-f32``: every installed
    backend in every dtype it runs on CPU tensors here (the gpu backend joins with
    TRITON_INTERPRET=1; tests/backends/gpu runs it that way)."""
    import rnnlab
    from rnnlab import backends

    return [
        pytest.param(name, dtype, id=f"{name}-{key}")
        for name in sorted(rnnlab.available_backends())
        for key, dtype in DTYPES.items()
        if backends.can_run(name, torch.device("cpu"), dtype)
    ]


def assert_rel_close(actual, expected, tol: float, what: str = "") -> None:
    """max|actual - expected| <= tol * max(max|expected|, 1), with shapes equal."""
    actual = torch.as_tensor(actual)
    expected = torch.as_tensor(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    err = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    scale = max(expected.double().abs().max().item() if expected.numel() else 0.0, 1.0)
    assert err <= tol * scale, f"{what}: max abs error {err:.3e} > {tol:.1e} x {scale:.3g}"


# Python entry points of torch's recurrent kernels, and the fused kernels they end in.
_BLOCKED_NAMES = (
    "lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell",
    "rnn_relu_cell", "quantized_lstm", "quantized_gru",
)
_BLOCKED_ATEN = {
    getattr(torch.ops.aten, name)
    for name in (
        *_BLOCKED_NAMES, "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell", "mkldnn_rnn_layer",
        "_cudnn_rnn", "miopen_rnn", "_use_cudnn_rnn_flatten_weight",
    )
    if hasattr(torch.ops.aten, name)
}


class TorchRNNUsed(AssertionError):
    pass


class _BlockRNNKernels(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in _BLOCKED_ATEN:
            raise TorchRNNUsed(f"torch recurrent kernel {func} was called")
        return func(*args, **(kwargs or {}))


class _BlockRNNFunctions(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) in _BLOCKED_NAMES:
            raise TorchRNNUsed(f"torch function {func.__name__} was called")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def torch_rnn_blocked():
    """Inside: every torch recurrent kernel raises — patched Python entry points, a
    torch-function mode for the C++ bindings, and a dispatch mode for the fused kernels."""

    def refuse(name):
        def blocked(*args, **kwargs):
            raise TorchRNNUsed(f"torch.{name} was called")

        return blocked

    with pytest.MonkeyPatch.context() as mp:
        for owner in (torch._VF, torch):
            for name in _BLOCKED_NAMES:
                if hasattr(owner, name):
                    mp.setattr(owner, name, refuse(name), raising=False)
        with _BlockRNNFunctions(), _BlockRNNKernels():
            yield

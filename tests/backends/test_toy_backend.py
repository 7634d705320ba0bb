"""The backend contract is complete: a toy backend registered through the public API
alone (:func:`rnnlab.backends.register` and :mod:`rnnlab.backends.contract`), which
wraps the portable backend and counts its calls, passes the layer conformance suite
(tests/nn, run unchanged on it, in this process) and streams. Every family of
:class:`~rnnlab.backends.contract.BackendKernels` is wrapped, and each entry point its
protocol declares must have been called: a new family is covered once it is a field."""

from __future__ import annotations

import dataclasses
import typing
from collections import Counter
from pathlib import Path

import pytest
import torch

import rnnlab
import rnnlab.nn as rnn
from helpers import assert_rel_close
from rnnlab import backends
from rnnlab.backends import contract
from rnnlab.backends.contract import BackendKernels, LayerwiseStream, StreamSpec

ROOT = Path(__file__).resolve().parents[2]
# A representative part of tests/nn (the whole of it is ~6 min on portable): random
# layer configurations vs torch.nn (every family and option, inference and training,
# packed input, gradients and ∂L/∂h_t through recording), the cells, recording, and the
# layer-normalised and regularised layers (the lnlstm, lngru, masked_lstm, masked_gru
# families) and the min layers (mingru, minlstm) against the reference.
SUITE = [
    "tests/nn/test_layers_vs_torch.py", "tests/nn/test_cells.py", "tests/nn/test_record.py",
    "tests/nn/test_layer_norm_layers.py", "tests/nn/test_regularisers.py",
    "tests/nn/test_min_layers.py",
]
_HINTS = typing.get_type_hints(BackendKernels, vars(contract))
# family field -> the entry points its protocol declares
ENTRIES = {
    field.name: [e for e in ("forward", "backward", "infer") if hasattr(_HINTS[field.name], e)]
    for field in dataclasses.fields(BackendKernels)
    if field.name not in ("name", "stream")
}


class _Counting:
    """Forwards every entry point of ``inner``, counting calls by name."""

    def __init__(self, family: str, inner, calls: Counter) -> None:
        self._family, self._inner, self._calls = family, inner, calls

    def __getattr__(self, entry: str):
        method = getattr(self._inner, entry)

        def counted(*args):
            self._calls[f"{self._family}.{entry}"] += 1
            return method(*args)

        return counted


class _CountingStream:
    def __init__(self, inner, calls: Counter) -> None:
        self._inner, self._calls = inner, calls

    def open(self, spec: StreamSpec, h, c):
        self._calls[f"stream.open.{spec.family}"] += 1
        return self._inner.open(spec, h, c)


@pytest.fixture
def toy(monkeypatch):
    from rnnlab.backends import portable

    calls: Counter = Counter()
    base = portable.KERNELS
    families = {name: _Counting(name, getattr(base, name), calls) for name in ENTRIES}
    stream = LayerwiseStream(families["rnn"], families["lstm"], families["gru"])
    kernels = BackendKernels("toy", stream=_CountingStream(stream, calls), **families)
    backends.register(
        "toy", lambda: kernels, lambda device, dtype: dtype.is_floating_point, "a test's toy"
    )
    monkeypatch.setenv(backends.ENV_VAR, "toy")
    try:
        yield calls
    finally:
        backends.unregister("toy")


def test_the_layer_conformance_suite_runs_on_a_registered_toy_backend(toy):
    exit_code = pytest.main(
        ["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-x", "--rootdir", str(ROOT),
         *(str(ROOT / path) for path in SUITE)]
    )
    assert exit_code == pytest.ExitCode.OK
    assert set(ENTRIES) >= {"rnn", "lstm", "gru", "lnlstm", "lngru", "masked_lstm", "masked_gru",
                            "mingru", "minlstm"}
    for family, entries in ENTRIES.items():
        for entry in entries:
            assert toy[f"{family}.{entry}"] > 0, (family, entry, dict(toy))


def test_a_toy_backend_streams_and_use_backend_picks_it(toy, monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR)
    torch.manual_seed(0)
    layer = rnn.LSTM(3, 5, num_layers=2, proj_size=2)
    x = torch.randn(4, 3)
    with torch.no_grad(), rnnlab.use_backend("portable"):
        want, _ = layer(x)
    with rnnlab.use_backend("toy"):
        stream = rnn.Stream(layer)
    got = torch.stack([stream.step(x[t]) for t in range(4)])
    assert_rel_close(got, want, 1e-5, "toy stream")
    assert toy["stream.open.lstm"] == 1 and toy["lstm.infer"] == 8  # 2 layers x 4 steps


def test_register_rejects_bad_names_and_built_ins():
    with pytest.raises(ValueError, match="identifier"):
        backends.register("not a name", lambda: None, lambda d, t: True, "")
    with pytest.raises(ValueError, match="already registered"):
        backends.register("portable", lambda: None, lambda d, t: True, "")
    with pytest.raises(ValueError, match="built in"):
        backends.unregister("cpu")

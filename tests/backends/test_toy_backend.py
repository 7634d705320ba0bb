"""The backend contract is complete: a toy backend registered through the public API
alone (:func:`rnnlab.backends.register` and :mod:`rnnlab.backends.contract`), which
wraps the portable backend and counts its calls, passes the layer conformance suite
(tests/nn, run unchanged on it, in this process) and streams."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

import rnnlab
import rnnlab.nn as rnn
from helpers import assert_rel_close
from rnnlab import backends
from rnnlab.backends.contract import BackendKernels, LayerwiseStream, StreamSpec

ROOT = Path(__file__).resolve().parents[2]
# A representative part of tests/nn (the whole of it is ~6 min on portable): random
# layer configurations vs torch.nn (every family and option, inference and training,
# packed input, gradients and ∂L/∂h_t through recording), the cells, and recording.
SUITE = ["tests/nn/test_layers_vs_torch.py", "tests/nn/test_cells.py", "tests/nn/test_record.py"]


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
    families = [_Counting(name, getattr(base, name), calls) for name in ("rnn", "lstm", "gru")]
    kernels = BackendKernels(
        "toy", *families, stream=_CountingStream(LayerwiseStream(*families), calls),
        lnlstm=_Counting("lnlstm", base.lnlstm, calls), lngru=_Counting("lngru", base.lngru, calls),
        masked_lstm=_Counting("masked_lstm", base.masked_lstm, calls),
        masked_gru=_Counting("masked_gru", base.masked_gru, calls),
    )
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
    for family in ("rnn", "lstm", "gru"):
        for entry in ("forward", "backward", "infer"):
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

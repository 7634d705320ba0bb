"""Kernel variants of the cpu backend (:mod:`rnnlab.backends.cpu._isa`): how one is
chosen and forced, that each is compiled for its own instruction set, that the ops agree
with the reference on every variant this CPU runs, and that Numba's disk cache serves
the variant asked for and goes stale when the backend's source changes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from numba import njit

import rnnlab
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import ops, reference
from rnnlab.backends.cpu import _isa, _jit, _tile

x86_only = pytest.mark.skipif(not _isa.is_x86_64(), reason="x86-64 variants")


@x86_only
def test_auto_is_the_widest_variant_the_cpu_runs_and_a_forced_one_must_run(monkeypatch):
    features = {"sse2": True, "avx": True, "avx2": True, "fma": True}
    monkeypatch.setattr(_isa.llvm, "get_host_cpu_features", lambda: features)
    assert _isa.resolve("auto") is _isa.AVX2
    assert _isa.resolve(" AVX2 ") is _isa.AVX2
    assert _isa.resolve("portable") is _isa.PORTABLE
    with pytest.raises(_isa.IsaError, match=r"RNNLAB_CPU_ISA=avx512 needs avx512f, .* it can "
                                            r"run avx2, portable"):
        _isa.resolve("avx512")
    features["avx512f"] = True
    assert _isa.resolve("") is _isa.AVX512
    features.clear()
    assert _isa.resolve("auto") is _isa.PORTABLE
    with pytest.raises(_isa.IsaError, match="needs avx, avx2, fma"):
        _isa.resolve("avx2")

    def unknown():
        raise RuntimeError("failed to get host cpu features")

    monkeypatch.setattr(_isa.llvm, "get_host_cpu_features", unknown)
    assert _isa.resolve("auto") is _isa.PORTABLE


def test_an_unknown_variant_is_an_error_naming_the_choices():
    with pytest.raises(_isa.IsaError, match=r"'sse9' is not a kernel variant; expected one "
                                            r"of avx512, avx2, portable, auto"):
        _isa.resolve("sse9")


def test_use_isa_sets_and_restores_the_variant():
    before = _isa.active()
    with _isa.use_isa("portable") as isa:
        assert isa is _isa.PORTABLE and _isa.active() is _isa.PORTABLE
    assert _isa.active() is before


@x86_only
def test_each_variant_is_compiled_for_its_own_instruction_set():
    """Whatever the host: AVX-512 tiles use zmm registers, AVX2 tiles ymm and never zmm,
    portable tiles the host's widest (zmm only where the host has AVX-512)."""
    fresh = njit(_tile.panel_matmul.py_func)  # not from the disk cache, so it can be read
    fresh(np.ones((2, 4), np.float32), _tile.pack_panels(np.ones((16, 4), np.float32), True),
          np.empty((2, 16), np.float32), np.empty((2, 16), np.float32))
    asm = fresh.inspect_asm(fresh.signatures[0])
    bodies = dict(re.findall(r"\n(rnnlab_tile_\w+):(.*?)\.Lfunc_end", asm, re.S))
    host_avx512 = bool(llvm_features().get("avx512f"))
    for isa in _isa.COMPILED:
        for rows, width in _tile._shapes(isa):
            body = bodies[_tile.tile_name(isa, rows, width)]
            assert "vfmadd" in body
            zmm = "zmm" in body
            assert zmm == (isa is _isa.AVX512 or (isa is _isa.PORTABLE and host_avx512)), (
                isa.name, rows, width)
            if isa is _isa.AVX2:
                assert "ymm" in body


def llvm_features():
    return _isa.llvm.get_host_cpu_features()


CELLS = ["rnn_tanh", "lstm", "lstm_proj", "gru", "gru_reset_before"]


@pytest.mark.parametrize("cell", CELLS)
def test_ops_on_the_register_tiles_match_the_reference(cell, cpu_isa):
    """float32, every per-step product on the tiles (widths H, 3H, 4H, P multiples of 16),
    B = 9 with lengths from 7 down to 1 (every tile row count, a full tile and an
    overlapping one), both directions: outputs, saved gates and every gradient against
    the float64 reference, to the usual tolerances."""
    family = cell.split("_")[0]
    T, B, I, H = 7, 9, 5, 32 if cell == "lstm_proj" else 16
    P = 16
    G = {"rnn": 1, "lstm": 4, "gru": 3}[family] * H
    lengths = np.array([7, 3, 7, 5, 1, 6, 2, 4, 7])
    rs = np.random.default_rng(len(cell))
    arrays = {"x": rs.normal(size=(T, B, I)), "h0": rs.normal(size=(B, P)),
              "w_ih": rs.normal(size=(G, I)) * 0.5, "w_hh": rs.normal(size=(G, P)) * 0.3,
              "b_ih": rs.normal(size=G), "b_hh": rs.normal(size=G)}
    names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
    if family == "lstm":
        arrays["c0"] = rs.normal(size=(B, H))
        names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"]
        if cell == "lstm_proj":
            arrays["w_hr"] = rs.normal(size=(P, H)) * 0.3
    dy, dh_n, dc_n = rs.normal(size=(T, B, P)), rs.normal(size=(B, P)), rs.normal(size=(B, H))
    for reverse in (False, True):
        common = {"lengths": lengths, "reverse": reverse}
        ref_args = [arrays.get(n) for n in names]
        if family == "lstm":
            y_ref, finals_ref, cache = reference.lstm_forward(*ref_args, **common)
            grads_ref = reference.lstm_backward(dy, dh_n, dc_n, cache)
        elif family == "gru":
            y_ref, h_ref, cache = reference.gru_forward(*ref_args, reset_after=cell == "gru",
                                                        **common)
            grads_ref, finals_ref = reference.gru_backward(dy, dh_n, cache), (h_ref,)
        else:
            y_ref, h_ref, cache = reference.rnn_forward(*ref_args, nonlinearity="tanh",
                                                        **common)
            grads_ref, finals_ref = reference.rnn_backward(dy, dh_n, cache), (h_ref,)

        t = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True)
             for k, v in arrays.items()}
        probe = torch.zeros(T, B, P, requires_grad=True)
        args = [t.get(n) for n in names]
        with rnnlab.use_backend("cpu"):
            if family == "lstm":
                y, h, c, *_ = ops.lstm(*args, torch.tensor(lengths), probe, reverse)
                finals = (h, c)
            elif family == "gru":
                y, h, _ = ops.gru(*args, torch.tensor(lengths), probe, reverse, cell == "gru")
                finals = (h,)
            else:
                y, h, _ = ops.rnn(*args, torch.tensor(lengths), probe, reverse, False)
                finals = (h,)
            loss = sum((a * torch.tensor(b, dtype=torch.float32)).sum()
                       for a, b in zip((y, *finals), (dy, dh_n, dc_n)[: 1 + len(finals)],
                                       strict=True))
            loss.backward()
        tol, gtol = OUT_TOL[torch.float32], GRAD_TOL[torch.float32]
        assert_rel_close(y, torch.from_numpy(y_ref), tol, f"y (reverse={reverse})")
        for k, (a, b) in enumerate(zip(finals, finals_ref, strict=True)):
            assert_rel_close(a, torch.from_numpy(b), tol, f"final state {k}")
        for name, tensor in t.items():
            assert_rel_close(tensor.grad, torch.from_numpy(grads_ref[name]), gtol, f"d{name}")
        assert_rel_close(probe.grad, torch.from_numpy(grads_ref["h"]), gtol, "dL/dh_t")


_CHILD = """
import json, torch, rnnlab, rnnlab.nn
from rnnlab.backends.cpu import _isa, lstm
with rnnlab.use_backend("cpu"), torch.no_grad():
    rnnlab.nn.LSTM(3, 16, num_layers=2)(torch.randn(5, 7, 3))  # B = 7: on the tiles
stats = lstm._infer.stats  # no_grad: the inference kernel
print(json.dumps({"active": _isa.active().name, "ran": sorted(_isa.ran()),
                  "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def _child(isa: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != _isa.ENV_VAR}
    if isa is not None:
        env[_isa.ENV_VAR] = isa
    return subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          timeout=300, env=env)


def test_the_disk_cache_serves_the_kernels_and_the_variant_asked_for():
    """A first process (automatic variant) fills the cache; a second one, forced to
    another variant, loads every kernel from the cache and runs that variant's tiles.
    A variant this CPU cannot run is one clear error."""
    first = _child(None)
    assert first.returncode == 0, first.stderr
    auto = json.loads(first.stdout.strip().splitlines()[-1])
    assert auto["active"] == auto["ran"][0] == _isa.runnable()[0].name
    other = _isa.runnable()[-1].name  # portable here
    second = json.loads(_child(other).stdout.strip().splitlines()[-1])
    assert second == {"active": other, "ran": [other], "hits": second["hits"], "misses": 0}
    assert second["hits"] >= 1
    unrunnable = [n for n, isa in _isa.BY_NAME.items() if _isa.missing_features(isa)]
    bad = _child(unrunnable[0] if unrunnable else "sse9")
    assert bad.returncode != 0
    assert f"IsaError: {_isa.ENV_VAR}=" in bad.stderr.strip().splitlines()[-1]


def test_a_change_to_the_backend_source_makes_cached_kernels_stale(tmp_path, monkeypatch):
    """The cache stamp of every kernel holds a hash of the whole backend's source (Numba
    alone checks the kernel's own file only)."""
    monkeypatch.setenv(_jit.CACHE_ENV, str(tmp_path / "cache"))  # not the user's cache
    source = tmp_path / "some_kernel.py"
    source.write_text("def add_one(x):\n    return x + 1\n")
    spec = importlib.util.spec_from_file_location("some_kernel", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "some_kernel", module)  # so a cached load can import it

    def compiled():
        fn = _jit.kernel()(module.add_one)
        assert fn(1) == 2
        return fn.stats

    compiled()  # compiles and saves
    assert compiled().cache_hits  # same source: loaded
    monkeypatch.setattr(_jit, "SOURCE_HASH", "another backend source")
    stale = compiled()
    assert stale.cache_misses and not stale.cache_hits


def test_the_source_hash_covers_every_module_of_the_backend(tmp_path):
    for path in _jit.source_files():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert _jit.source_hash(tmp_path) == _jit.SOURCE_HASH
    assert {"_tile.py", "_isa.py", "_math.py", "_blas.py", "lstm.py"} <= {
        p.name for p in _jit.source_files()}
    (tmp_path / "_math.py").write_text((tmp_path / "_math.py").read_text() + "\n# edited\n")
    assert _jit.source_hash(tmp_path) != _jit.SOURCE_HASH

"""The cpu backend's compiled layer-normalised LSTM and GRU (cpu/lnlstm.py, cpu/lngru.py)
against the NumPy reference, on what the shared conformance suite
(tests/ops/test_backends_vs_reference.py, variants "lnlstm", "lngru") does not reach:
the batch split over threads with lengths, several backward time blocks with T not a
multiple of the block, both directions, the gradient probe, NaN padding, and the
inference kernels' chunks. Each test counts the compiled kernels' calls, so a fallback
to another implementation would fail it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rnnlab
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import ops_ln, reference
from rnnlab.backends import cpu
from rnnlab.backends.cpu import _host, _parallel, _switches, _tuning
from rnnlab.backends.cpu import lngru as cpu_lngru
from rnnlab.backends.cpu import lnlstm as cpu_lnlstm
from rnnlab.backends.cpu.lngru import CpuLNGRU
from rnnlab.backends.cpu.lnlstm import CpuLNLSTM

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
MODULES = {"lnlstm": cpu_lnlstm, "lngru": cpu_lngru}
LENGTHS = [13, 4, 13, 1, 9]  # B = 5, unequal: the rows are dealt out longest first


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the compiled kernels' calls: {(family, kernel name): parts run}."""
    calls: dict[tuple[str, str], int] = {}
    for family, module in MODULES.items():
        for name in ("_forward", "_backward", "_infer"):
            real = getattr(module, name)

            def counted(*args, _real=real, _key=(family, name)):
                calls[_key] = calls.get(_key, 0) + 1
                return _real(*args)

            monkeypatch.setattr(module, name, counted)
    return calls


@pytest.fixture
def two_parts(monkeypatch):
    """Every call split over two threads by samples, whatever the size."""
    monkeypatch.setattr(_switches, "THREAD_CAP", None)
    monkeypatch.setattr(_tuning, "MIN_PART_FLOPS", 0)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    parts = []
    real = _parallel.run_parts
    monkeypatch.setattr(_host, "run_parts", lambda part, rows: (
        parts.append(len(rows)), real(part, rows))[1])
    yield parts
    torch.set_num_threads(saved)


def test_the_cpu_backend_serves_both_families_with_its_kernels():
    assert isinstance(cpu.KERNELS.lnlstm, CpuLNLSTM)
    assert isinstance(cpu.KERNELS.lngru, CpuLNGRU)


def _arrays(family, T, B, I, H, seed, lengths):
    G = (4 if family == "lnlstm" else 3) * H
    rs = np.random.default_rng(seed)
    a = {"x": rs.normal(size=(T, B, I)), "h0": rs.normal(size=(B, H)),
         "w_ih": rs.normal(size=(G, I)) * 0.5, "w_hh": rs.normal(size=(G, H)) * 0.5,
         "b_ih": rs.normal(size=G), "b_hh": rs.normal(size=G),
         "gamma_ih": 1 + 0.3 * rs.normal(size=G), "gamma_hh": 1 + 0.3 * rs.normal(size=G)}
    if family == "lnlstm":
        a["c0"] = rs.normal(size=(B, H))
        a["gamma_c"], a["beta_c"] = 1 + 0.3 * rs.normal(size=H), 0.3 * rs.normal(size=H)
    if lengths is not None:
        a["x"][np.arange(T)[:, None] >= np.array(lengths)[None, :]] = np.nan  # never read
    return a


NAMES = {
    "lnlstm": ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "gamma_ih", "gamma_hh",
               "gamma_c", "beta_c"],
    "lngru": ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "gamma_ih", "gamma_hh"],
}


def _reference(family, a, lengths, reverse):
    """(y, final states, gates dict, gradients) of the reference for the loss
    Σ dy ⊙ y + Σ dh_n ⊙ h_n (+ Σ dc_n ⊙ c_n)."""
    common = {"lengths": None if lengths is None else np.array(lengths), "reverse": reverse}
    args = [a[n] for n in NAMES[family]]
    rs = np.random.default_rng(1)
    T, B, H = a["x"].shape[0], a["x"].shape[1], a["h0"].shape[1]
    dy, dh_n, dc_n = rs.normal(size=(T, B, H)), rs.normal(size=(B, H)), rs.normal(size=(B, H))
    if family == "lnlstm":
        y, (h, c), cache = reference.lnlstm_forward(*args, **common)
        grads = reference.lnlstm_backward(dy, dh_n, dc_n, cache)
        return y, [h, c], cache.gates, grads, (dy, dh_n, dc_n)
    y, h, cache = reference.lngru_forward(*args, **common)
    return y, [h], cache.gates, reference.lngru_backward(dy, dh_n, cache), (dy, dh_n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", ["lnlstm", "lngru"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_split_blocks_probe_match_reference(family, dtype, lengths, reverse, kernel_calls,
                                            two_parts, monkeypatch):
    """Forward and backward on two threads, backward in blocks of 8 steps (T = 13: the
    last block is partial), the probe's gradient = the total ∂L/∂h_t, NaN padding."""
    monkeypatch.setattr(_tuning, "BLOCK_ROWS", 1)  # blocks of 8 steps, the least
    monkeypatch.setattr(_tuning, "BLOCK_SHARE", 1)  # (not a quarter of T = 13)
    T, B, I, H = 13, 5, 3, 6
    a = _arrays(family, T, B, I, H, seed=len(family) + reverse, lengths=lengths)
    y_ref, finals_ref, gates_ref, grads_ref, (dy, *d_finals) = _reference(
        family, a, lengths, reverse)
    t = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in a.items()}
    probe = torch.zeros(T, B, H, dtype=dtype, requires_grad=True)
    lens = None if lengths is None else torch.tensor(lengths)
    op = ops_ln.lnlstm if family == "lnlstm" else ops_ln.lngru
    with rnnlab.use_backend("cpu"):
        out = op(*(t[n] for n in NAMES[family]), lens, probe, reverse)
        finals = list(out[1:3] if family == "lnlstm" else out[1:2])
        loss = (out[0] * torch.tensor(dy, dtype=dtype)).sum()
        for state, d in zip(finals, d_finals, strict=True):
            loss = loss + (state * torch.tensor(d, dtype=dtype)).sum()
        loss.backward()
    assert kernel_calls[(family, "_forward")] == 2  # one call per part
    assert kernel_calls[(family, "_backward")] == 2 * 2  # two blocks, two parts each
    assert two_parts and all(n == 2 for n in two_parts), two_parts
    tol, gtol = OUT_TOL[dtype], GRAD_TOL[dtype]
    assert_rel_close(out[0], torch.from_numpy(y_ref), tol, "y")
    for k, (got, want) in enumerate(zip(finals, finals_ref, strict=True)):
        assert_rel_close(got, torch.from_numpy(want), tol, f"final state {k}")
    H4 = out[-2 if family == "lnlstm" else -1].split(H, dim=2)
    names = ["i", "f", "g", "o"] if family == "lnlstm" else ["r", "z", "n", "hn"]
    recorded = dict(zip(names, H4, strict=True))
    if family == "lnlstm":
        recorded["c"] = out[-1]
    for name, value in gates_ref.items():
        assert_rel_close(recorded[name], torch.from_numpy(value), tol, f"gate {name}")
    for name, tensor in t.items():
        assert_rel_close(tensor.grad, torch.from_numpy(grads_ref[name]), gtol, f"d{name}")
    assert_rel_close(probe.grad, torch.from_numpy(grads_ref["h"]), gtol, "total dL/dh_t")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", ["lnlstm", "lngru"])
@pytest.mark.parametrize("threads", [1, 2])
def test_inference_kernels_match_reference(family, dtype, threads, kernel_calls, monkeypatch):
    """The inference ops' kernels (projection and its normalisation in chunks inside the
    loop, running rows only): chunks of 1 step, of 3 and of all, with and without
    lengths, both directions, one and two parts."""
    monkeypatch.setattr(_switches, "THREAD_CAP", None)
    monkeypatch.setattr(_tuning, "MIN_PART_FLOPS", 0)
    T, B, I, H = 11, 5, 4, 7
    infer = ops_ln.lnlstm_infer if family == "lnlstm" else ops_ln.lngru_infer
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for chunk_rows, lengths, reverse in [(1, None, False), (3 * B, [11, 2, 7, 1, 4], True),
                                             (1024, [3, 11, 5, 1, 9], False)]:
            monkeypatch.setattr(_tuning, "CHUNK_ROWS", chunk_rows)
            a = _arrays(family, T, B, I, H, seed=chunk_rows, lengths=lengths)
            y_ref, finals_ref = _reference(family, a, lengths, reverse)[:2]
            t = [torch.tensor(a[n], dtype=dtype) for n in NAMES[family]]
            lens = None if lengths is None else torch.tensor(lengths)
            with rnnlab.use_backend("cpu"):
                got = infer(*t, lens, reverse)
            for name, value, want in zip(("y", "h_n", "c_n"), got, [y_ref, *finals_ref],
                                         strict=False):
                assert_rel_close(value, torch.from_numpy(want), OUT_TOL[dtype],
                                 f"{name} (chunk rows {chunk_rows})")
    finally:
        torch.set_num_threads(saved)
    assert kernel_calls[(family, "_infer")] == 3 * (1 if threads == 1 else 2)
    assert (family, "_forward") not in kernel_calls


@pytest.mark.parametrize("family", ["lnlstm", "lngru"])
def test_larger_shapes_match_portable(family, kernel_calls):
    """float32 at H = 40 with B = 9 (the register tiles' path of the per-step product,
    a partial panel): outputs and every gradient against the portable backend."""
    T, B, I, H = 17, 9, 24, 40
    a = _arrays(family, T, B, I, H, seed=3, lengths=None)
    lens = torch.tensor([17, 3, 16, 17, 9, 1, 12, 17, 5])
    results = {}
    for backend in ("cpu", "portable"):
        t = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in a.items()}
        op = ops_ln.lnlstm if family == "lnlstm" else ops_ln.lngru
        with rnnlab.use_backend(backend):
            out = op(*(t[n] for n in NAMES[family]), lens, None, True)
            (out[0] * torch.linspace(-1, 1, out[0].numel()).view_as(out[0])).sum().add(
                out[1].square().sum()).backward()
        results[backend] = {"y": out[0].detach(), "h_n": out[1].detach(),
                            **{"d" + k: v.grad for k, v in t.items() if k != "x"},
                            "dx": t["x"].grad}
    assert kernel_calls[(family, "_forward")] >= 1 and kernel_calls[(family, "_backward")] >= 1
    for name, want in results["portable"].items():
        tol = OUT_TOL[torch.float32] if name in ("y", "h_n") else GRAD_TOL[torch.float32]
        assert_rel_close(results["cpu"][name], want, tol, name)


@pytest.mark.parametrize("family", ["lnlstm", "lngru"])
def test_zero_input_features_match_portable(family, kernel_calls):
    """I = 0 (every input GEMM with K = 0): forward, every gradient and inference, with
    lengths and reversed, against the portable backend."""
    T, B, H = 4, 3, 5
    a = _arrays(family, T, B, 0, H, seed=5, lengths=None)
    lens = torch.tensor([4, 2, 1])
    results = {}
    for backend in ("cpu", "portable"):
        t = [torch.tensor(a[n], requires_grad=True) for n in NAMES[family]]
        op = ops_ln.lnlstm if family == "lnlstm" else ops_ln.lngru
        infer = ops_ln.lnlstm_infer if family == "lnlstm" else ops_ln.lngru_infer
        with rnnlab.use_backend(backend):
            out = op(*t, lens, None, True)
            grads = torch.autograd.grad(out[0].sum() + out[1].square().sum(), t)
            inferred = infer(*(v.detach() for v in t), lens, True)
        results[backend] = [out[0], out[1], *grads, *inferred]
    assert {name for _, name in kernel_calls} == {"_forward", "_backward", "_infer"}
    for k, (got, want) in enumerate(zip(results["cpu"], results["portable"], strict=True)):
        assert_rel_close(got, want, OUT_TOL[torch.float64], f"result {k}")

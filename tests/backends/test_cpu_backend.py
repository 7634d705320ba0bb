"""The cpu backend beyond the shared conformance suite: automatic choice, larger shapes
on every GEMM path against the portable backend, and thread settings (the on-disk cache
of compiled kernels: test_cpu_isa.py)."""

from __future__ import annotations

import inspect
import itertools
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch

import rnnlab
import rnnlab.nn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import ops
from rnnlab.backends import cpu, select
from rnnlab.backends._rows import row_layout
from rnnlab.backends.cpu import _common, _host, _parallel, _switches, _sync, _tuning

VARIANTS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "gru_reset_before"]
# where the split-by-units kernel takes its part number
_PART = list(inspect.signature(cpu.lstm._infer_units.py_func).parameters).index("part")


@pytest.fixture
def threads_on(monkeypatch):
    """The split across threads allowed, whatever ``RNNLAB_CPU_THREADS`` says (for the
    tests of the split itself)."""
    monkeypatch.setattr(_switches, "THREAD_CAP", None)


def test_automatic_choice_is_cpu_for_float32_and_float64_only():
    for dtype in (torch.float32, torch.float64):
        assert select(torch.device("cpu"), dtype) is cpu.KERNELS
    assert select(torch.device("cpu"), torch.bfloat16) is not cpu.KERNELS


def _run(variant, backend, B, dtype, *, T=12, I=24, H=40, P=16, lengths=True, reverse=True,
         packed=False):
    """Outputs and gradients of one op call on ``backend`` (same inputs for every call);
    ``packed``: x and the probe as packed rows (lengths sorted, the longest T)."""
    family = variant.split("_")[0]
    g = torch.Generator().manual_seed(B)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[family] * H
    P = P if variant == "lstm_proj" else H

    def r(*shape, scale=0.3):
        return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    t = {"x": r(T, B, I, scale=1.0), "h0": r(B, P), "w_ih": r(G, I), "w_hh": r(G, P),
         "b_ih": r(G), "b_hh": r(G)}
    if family == "lstm":
        t["c0"] = r(B, H)
        t["w_hr"] = r(P, H) if variant == "lstm_proj" else None
    lens = torch.randint(1, T + 1, (B,), generator=g) if lengths else None
    probe = torch.zeros(T, B, P, dtype=dtype)
    if packed:
        lens = torch.randint(1, T + 1, (B,), generator=g).sort(descending=True).values
        lens[0] = T
        index = row_layout(lens, torch.device("cpu")).index
        t["x"] = t["x"].reshape(T * B, I).index_select(0, index)
        probe = probe.reshape(T * B, P).index_select(0, index)
    leaves = {k: v.requires_grad_(True) for k, v in t.items() if v is not None}
    probe.requires_grad_(True)
    with rnnlab.use_backend(backend):
        if family == "lstm":
            out = ops.lstm(t["x"], t["h0"], t["c0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"],
                           t["w_hr"], lens, probe, reverse)
        elif family == "gru":
            out = ops.gru(t["x"], t["h0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], lens,
                          probe, reverse, variant == "gru")
        else:
            out = ops.rnn(t["x"], t["h0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], lens,
                          probe, reverse, variant == "rnn_relu")
        loss = (out[0] * torch.linspace(-1, 1, out[0].numel(), dtype=dtype).view_as(out[0])).sum()
        loss = loss + out[1].square().sum()
        loss.backward()
    results = {"y": out[0], "h_n": out[1], "saved": out[-1], "dh": probe.grad}
    results.update({"d" + k: v.grad for k, v in leaves.items()})
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("B", [1, 5], ids=["gemv", "gemm"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_larger_shapes_match_portable(variant, B, dtype, reverse, monkeypatch):
    """B = 1 runs the vectorised loop, B > 1 the tiles (float32, widths not multiples of
    16: padded panels) or the loop per row (float64): both against the
    portable backend, with every gradient and the gradient probe; backward in several
    time blocks (T = 30 in blocks of 8)."""
    monkeypatch.setattr(_tuning, "BLOCK_ROWS", 1)
    assert len(_common.time_blocks(30, B, reverse)) == 4
    got = _run(variant, "cpu", B, dtype, T=30, reverse=reverse)
    want = _run(variant, "portable", B, dtype, T=30, reverse=reverse)
    for name, value in want.items():
        tol = OUT_TOL[dtype] if name in ("y", "h_n", "saved") else GRAD_TOL[dtype]
        assert_rel_close(got[name], value, tol, name)


@pytest.mark.parametrize("T, B", [(1000, 1), (200, 16), (100, 64), (3, 1)])
def test_backward_blocks_cover_the_sequence_and_are_a_fraction_of_it(T, B):
    """The blocks tile [0, T) in backward's order; each holds at most BLOCK_ROWS rows (or 8
    steps) and at most 1/BLOCK_SHARE of the sequence, so one block's gradient buffers stay a
    fraction of the saved activations (a B = 1 sequence used to be one block)."""
    for reverse in (False, True):
        blocks = _common.time_blocks(T, B, reverse)
        ordered = sorted(blocks)
        assert ordered[0][0] == 0 and ordered[-1][1] == T
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ordered))
        assert blocks == (ordered if reverse else ordered[::-1])
        size = max(t1 - t0 for t0, t1 in blocks)
        assert size <= -(-T // _tuning.BLOCK_SHARE)
        assert size <= max(8, -(-_tuning.BLOCK_ROWS // B))


_NO_TORCH_LIBRARIES = textwrap.dedent("""
    import ctypes
    import llvmlite.binding as llvm
    import torch

    def guard(opener):
        def open_library(*args, **kwargs):
            path = str(args[1] if opener is real_cdll else args[0])
            if "torch" in path or "omp" in path:
                raise AssertionError(f"the cpu backend opened {path}")
            return opener(*args, **kwargs)
        return open_library

    real_cdll, real_load = ctypes.CDLL.__init__, llvm.load_library_permanently
    ctypes.CDLL.__init__ = guard(real_cdll)
    llvm.load_library_permanently = guard(real_load)
    import rnnlab.nn
    from rnnlab.backends import available_backends
    from rnnlab.backends.cpu import _tuning
    assert "cpu" in available_backends()
    torch.set_num_threads(2)
    _tuning.MIN_PART_FLOPS = 0  # split even this small batch by samples
    lstm = rnnlab.nn.LSTM(5, 24, num_layers=2)
    x = torch.randn(7, 6, 5)
    with torch.no_grad():
        with rnnlab.use_backend("cpu"):
            got = lstm(x)[0], lstm(x[:, :1])[0]
        with rnnlab.use_backend("portable"):
            want = lstm(x)[0], lstm(x[:, :1])[0]
    for a, b in zip(got, want):
        assert (a - b).abs().max() < 1e-5, (a - b).abs().max()
    print("ok")
""")


def test_the_backend_opens_no_torch_or_openmp_library():
    """In a fresh process whose ctypes and llvmlite refuse to open any library of torch's
    or an OpenMP runtime once torch is imported, the backend loads and agrees with
    portable (batch split, tiles at a width not a multiple of 16, B = 1)."""
    done = subprocess.run([sys.executable, "-c", _NO_TORCH_LIBRARIES], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.usefixtures("threads_on")
def test_calls_change_no_process_wide_setting(monkeypatch):
    """torch's thread setting, as every thread of the process sees it, stays the caller's
    throughout a call (read inside the call, where the parts run), for a small call and
    a large one."""
    seen = []
    real = _parallel.run_parts

    def spy(part, rows):
        seen.append(torch.get_num_threads())
        return real(part, rows)

    monkeypatch.setattr(_host, "run_parts", spy)  # the cells' runner
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for variant in ("lstm", "gru", "rnn_tanh"):
            _run(variant, "cpu", 3, torch.float32, T=4, I=4, H=8)
        assert seen and set(seen) == {2}, seen
    finally:
        torch.set_num_threads(saved)


def test_kernels_leave_thread_settings_as_they_found_them():
    """After a large call, torch's setting is unchanged, and a two-thread run equals a
    one-thread run."""
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        x = torch.randn(3, 64, 512)
        lstm = rnnlab.nn.LSTM(512, 512)
        with torch.no_grad(), rnnlab.use_backend("cpu"):
            two = lstm(x)[0]
            assert torch.get_num_threads() == 2
            torch.set_num_threads(1)
            one = lstm(x)[0]
        assert_rel_close(two, one, 1e-5, "2 threads vs 1")
    finally:
        torch.set_num_threads(saved)


@pytest.mark.usefixtures("threads_on")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
def test_batch_split_across_threads_matches_portable(variant, dtype, lengths, monkeypatch):
    """Two threads, each owning some samples (longest first, with the per-step product
    over the still-running prefix only): forward, backward in several time blocks, the
    gradient probe, both directions."""
    monkeypatch.setattr(_tuning, "MIN_PART_FLOPS", 0)
    monkeypatch.setattr(_tuning, "BLOCK_ROWS", 1)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        calls = []
        real = _parallel.run_parts
        monkeypatch.setattr(_parallel, "run_parts", lambda part, rows: (
            calls.append(len(rows)), real(part, rows))[1])
        monkeypatch.setattr(_host, "run_parts", _parallel.run_parts)  # the cells' runner
        for reverse in (False, True):
            got = _run(variant, "cpu", 7, dtype, T=20, lengths=lengths, reverse=reverse)
            want = _run(variant, "portable", 7, dtype, T=20, lengths=lengths, reverse=reverse)
            for name, value in want.items():
                tol = OUT_TOL[dtype] if name in ("y", "h_n", "saved") else GRAD_TOL[dtype]
                assert_rel_close(got[name], value, tol, name)
        assert calls and all(n == 2 for n in calls), calls
    finally:
        torch.set_num_threads(saved)


@pytest.mark.usefixtures("threads_on")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_packed_rows_match_portable(variant, dtype, monkeypatch):
    """Packed rows on the cpu kernels (rows addressed per step, no padding rows) against
    the portable backend (which runs them padded): B = 7 (the tiles in float32), two
    threads, backward in several time blocks, both directions."""
    monkeypatch.setattr(_tuning, "MIN_PART_FLOPS", 0)
    monkeypatch.setattr(_tuning, "BLOCK_ROWS", 1)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for reverse in (False, True):
            got = _run(variant, "cpu", 7, dtype, T=20, reverse=reverse, packed=True)
            want = _run(variant, "portable", 7, dtype, T=20, reverse=reverse, packed=True)
            for name, value in want.items():
                tol = OUT_TOL[dtype] if name in ("y", "h_n", "saved") else GRAD_TOL[dtype]
                assert_rel_close(got[name], value, tol, name)
    finally:
        torch.set_num_threads(saved)


def test_row_parts_order_longest_first_and_balance_work():
    same = _parallel.row_parts(np.full(5, 9), 2)
    assert [p.tolist() for p in same] == [[0, 1, 2], [3, 4]]  # contiguous blocks
    lengths = np.array([3, 9, 1, 7, 7, 2])
    parts = _parallel.row_parts(lengths, 2)
    assert sorted(np.concatenate(parts).tolist()) == list(range(6))
    for p in parts:
        assert np.all(np.diff(lengths[p]) <= 0)  # longest first within each part
    assert [lengths[p].tolist() for p in parts] == [[9, 7, 2], [7, 3, 1]]  # dealt in turn
    rows = parts[0]
    assert [_parallel.valid_prefix(lengths, rows, t) for t in (0, 1, 2, 6, 7, 8, 9)] == [
        3, 3, 2, 2, 1, 1, 0]


@pytest.mark.usefixtures("threads_on")
def test_part_count_follows_torch_threads_the_switch_batch_and_work(monkeypatch):
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert _parallel.part_count(16, 200, 2.0 * 1024 * 256) == 2
        assert _parallel.part_count(1, 1000, 2.0 * 1024 * 256) == 1  # one sample
        assert _parallel.part_count(4, 2, 2.0 * 16 * 16) == 1  # too little work
        assert _parallel.split_units(1, 1000, 256, 2.0 * 1024 * 384) == 2
        monkeypatch.setattr(_switches, "THREAD_CAP", 1)  # RNNLAB_CPU_THREADS=1
        assert _parallel.part_count(16, 200, 2.0 * 1024 * 256) == 1
        assert _parallel.split_units(1, 1000, 256, 2.0 * 1024 * 384) == 1
        monkeypatch.setattr(_switches, "THREAD_CAP", None)
        torch.set_num_threads(1)
        assert _parallel.part_count(16, 200, 2.0 * 1024 * 256) == 1
    finally:
        torch.set_num_threads(saved)


def test_switches_take_only_their_values():
    assert _switches._threads(None) is None and _switches._threads(" 3 ") == 3
    assert _switches._tiles(None) and _switches._tiles("1") and not _switches._tiles("0")
    for bad in ("0", "-2", "two"):
        with pytest.raises(_switches.SwitchError, match="RNNLAB_CPU_THREADS="):
            _switches._threads(bad)
    with pytest.raises(_switches.SwitchError, match=r"RNNLAB_CPU_TILES=.off. is not a switch"):
        _switches._tiles("off")


def test_run_parts_runs_every_part_at_once_and_reraises_errors():
    barrier = threading.Barrier(2, timeout=10)  # passes only if both parts run at once
    threads = []

    def meet(rows):
        barrier.wait()
        threads.append(threading.get_native_id())

    _parallel.run_parts(meet, [np.array([0]), np.array([1])])
    assert len(set(threads)) == 2
    seen = []

    def part(rows):
        seen.append(int(rows[0]))
        if rows[0] == 1:
            raise ValueError("part failed")

    with pytest.raises(ValueError, match="part failed"):
        _parallel.run_parts(part, [np.array([0]), np.array([1])])
    assert sorted(seen) == [0, 1]
    seen.clear()
    with _parallel._busy:  # another split call running: parts run here, in turn
        _parallel.run_parts(lambda rows: seen.append(int(rows[0])), [np.array([0]), np.array([1])])
    assert seen == [0, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("threads", [1, 2])
def test_inference_kernels_match_portable(variant, dtype, threads, monkeypatch):
    """The inference ops' own kernels (input projection in chunks inside the loop, over
    the running rows only): chunks of 1, 3 and many steps, one and two parts, with and
    without lengths, both directions, against the portable backend's forward."""
    monkeypatch.setattr(_tuning, "MIN_PART_FLOPS", 0)
    family = variant.split("_")[0]
    T, B, I, H = 11, 6, 5, 8
    P = 3 if variant == "lstm_proj" else H
    G = {"rnn": 1, "lstm": 4, "gru": 3}[family] * H
    g = torch.Generator().manual_seed(threads)

    def r(*shape):
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 0.5).to(dtype)

    x, h0, c0 = r(T, B, I), r(B, P), r(B, H)
    w_ih, w_hh, b_ih, b_hh, w_hr = r(G, I), r(G, P), r(G), r(G), r(P, H)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for chunk_rows, lengths, reverse in [(1, None, False), (3 * B, torch.tensor(
                [11, 2, 7, 7, 1, 4]), True), (1024, torch.tensor([3, 11, 5, 1, 9, 2]), False)]:
            monkeypatch.setattr(_tuning, "CHUNK_ROWS", chunk_rows)
            with rnnlab.use_backend("cpu"):
                if family == "lstm":
                    proj = w_hr if variant == "lstm_proj" else None
                    got = ops.lstm_infer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, proj, lengths,
                                         reverse)
                elif family == "gru":
                    got = ops.gru_infer(x, h0, w_ih, w_hh, b_ih, None, lengths, reverse,
                                        variant == "gru")
                else:
                    got = ops.rnn_infer(x, h0, w_ih, w_hh, None, b_hh, lengths, reverse,
                                        variant == "rnn_relu")
            with rnnlab.use_backend("portable"):
                if family == "lstm":
                    want = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, proj, lengths, None,
                                    reverse)[:3]
                elif family == "gru":
                    want = ops.gru(x, h0, w_ih, w_hh, b_ih, None, lengths, None, reverse,
                                   variant == "gru")[:2]
                else:
                    want = ops.rnn(x, h0, w_ih, w_hh, None, b_hh, lengths, None, reverse,
                                   variant == "rnn_relu")[:2]
            for name, a, b in zip(("y", "h_n", "c_n")[: len(want)], got, want, strict=True):
                assert_rel_close(a, b, OUT_TOL[dtype], f"{name} (chunk rows {chunk_rows})")
    finally:
        torch.set_num_threads(saved)


@pytest.mark.usefixtures("threads_on")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_lstm_inference_split_by_units_matches_portable(dtype, monkeypatch):
    """B = 1, two threads sharing every step's hidden units (uneven shares: 32 + 8 of
    40), with lengths, both directions, chunks of one and several steps."""
    B = 1
    monkeypatch.setattr(_tuning, "MIN_PART_FLOPS", 0)
    monkeypatch.setattr(_tuning, "MIN_UNITS", 16)
    monkeypatch.setattr(_parallel, "_unit_split_paused_until", 0.0)
    monkeypatch.setattr(_parallel, "note_unit_split", lambda waited, total: None)
    calls = []
    real = cpu.lstm._infer_units
    monkeypatch.setattr(cpu.lstm, "_infer_units", lambda *a: (calls.append(a[_PART]), real(*a))[1])
    T, I, H = 13, 6, 40
    g = torch.Generator().manual_seed(B)

    def r(*shape):
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 0.4).to(dtype)

    x, h0, c0 = r(T, B, I), r(B, H), r(B, H)
    w_ih, w_hh, b_ih, b_hh = r(4 * H, I), r(4 * H, H), r(4 * H), r(4 * H)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert [_parallel.unit_range(H, p, 2) for p in (0, 1)] == [(0, 32), (32, 40)]
        lengths_a, lengths_b = (torch.randint(1, T + 1, (B,), generator=g) for _ in range(2))
        for chunk_rows, lengths, reverse in [(1, None, False), (4 * B, lengths_a, True),
                                             (1024, lengths_b, False)]:
            monkeypatch.setattr(_tuning, "CHUNK_ROWS", chunk_rows)
            with rnnlab.use_backend("cpu"):
                got = ops.lstm_infer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, lengths, reverse)
            with rnnlab.use_backend("portable"):
                want = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, lengths, None,
                                reverse)[:3]
            for name, a, b in zip(("y", "h_n", "c_n"), got, want, strict=True):
                assert_rel_close(a, b, OUT_TOL[dtype], f"{name} (chunk rows {chunk_rows})")
    finally:
        torch.set_num_threads(saved)
    assert sorted(calls) == [0, 0, 0, 1, 1, 1]  # both threads, every call


@pytest.mark.usefixtures("threads_on")
def test_split_by_units_pauses_when_its_threads_wait_and_comes_back(monkeypatch):
    saved = torch.get_num_threads()
    monkeypatch.setattr(_parallel, "_unit_split_paused_until", 0.0)
    monkeypatch.setattr(_parallel, "_strikes", 0)
    try:
        torch.set_num_threads(2)
        work = 2.0 * 1024 * 384
        assert _parallel.split_units(1, 1000, 256, work) == 2
        assert _parallel.split_units(16, 1000, 256, work) == 1  # samples split instead
        assert _parallel.split_units(1, 1000, 64, work) == 1  # too few units
        _parallel.note_unit_split(long_wait_cycles=10**5, call_cycles=10**7)  # jitter
        assert _parallel.split_units(1, 1000, 256, work) == 2
        _parallel.note_unit_split(long_wait_cycles=6 * 10**6, call_cycles=10**7)  # one hiccup
        _parallel.note_unit_split(long_wait_cycles=10**5, call_cycles=10**7)
        _parallel.note_unit_split(long_wait_cycles=6 * 10**6, call_cycles=10**7)
        assert _parallel.split_units(1, 1000, 256, work) == 2
        _parallel.note_unit_split(long_wait_cycles=6 * 10**6, call_cycles=10**7)  # stalled
        assert _parallel.split_units(1, 1000, 256, work) == 1
        monkeypatch.setattr(_parallel, "_unit_split_paused_until", 0.0)  # the pause is over
        assert _parallel.split_units(1, 1000, 256, work) == 2
    finally:
        torch.set_num_threads(saved)



def test_a_wait_past_its_bound_abandons_the_call():
    flags = _sync.step_flags(2)
    flags[2 * _sync.STRIDE + 1] = 0  # the bound: no wait at all past the first polls
    assert _sync.finish_step(flags, 0, 2, 1) == _sync.ABANDONED  # part 1 never arrives
    assert _sync.abandoned(flags)
    flags[_sync.STRIDE] = 5  # part 1 arrives late, and stops at its next wait
    assert _sync.finish_step(flags, 1, 2, 6) == _sync.ABANDONED


@pytest.mark.usefixtures("threads_on")
def test_split_by_units_with_a_late_partner_reruns_on_one_thread(monkeypatch):
    """A partner that starts after the other part's bound (forced tiny): the call is
    abandoned, runs again on one thread from the initial state (the same results as
    portable's), and the split pauses."""
    monkeypatch.setattr(_tuning, "MIN_PART_FLOPS", 0)
    monkeypatch.setattr(_tuning, "MIN_UNITS", 16)
    monkeypatch.setattr(_tuning, "WAIT_BOUND", 0)
    monkeypatch.setattr(_parallel, "_unit_split_paused_until", 0.0)
    real = cpu.lstm._infer_units

    def late(*args):
        if args[_PART] == 1:  # part 1
            time.sleep(0.05)
        real(*args)

    monkeypatch.setattr(cpu.lstm, "_infer_units", late)
    g = torch.Generator().manual_seed(0)
    T, I, H = 9, 3, 32
    x, h0, c0 = (torch.randn(s, generator=g) * 0.4 for s in ((T, 1, I), (1, H), (1, H)))
    w_ih, w_hh, b_ih = (torch.randn(s, generator=g) * 0.4 for s in ((4 * H, I), (4 * H, H),
                                                                        (4 * H,)))
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert _parallel.split_units(1, T, H, 1.0) == 2
        with rnnlab.use_backend("cpu"):
            got = ops.lstm_infer(x, h0, c0, w_ih, w_hh, b_ih, None, None, None, False)
        assert _parallel._unit_split_paused_until > time.monotonic()  # it was abandoned
    finally:
        torch.set_num_threads(saved)
    with rnnlab.use_backend("portable"):
        want = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, None, None, None, None, False)[:3]
    for name, a, b in zip(("y", "h_n", "c_n"), got, want, strict=True):
        assert_rel_close(a, b, OUT_TOL[torch.float32], name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_register_tiles_path_matches_portable(variant, monkeypatch):
    """H = 32, so every per-step product of every variant (forward and backward: widths
    H, 2H, 3H, 4H, P = 16) runs on the register tiles; B = 11 needs a full tile and an
    overlapping one; with and without a split by samples."""
    monkeypatch.setattr(_tuning, "BLOCK_ROWS", 1)
    saved = torch.get_num_threads()
    try:
        for threads, min_flops in ((1, 1 << 22), (2, 0)):
            torch.set_num_threads(threads)
            monkeypatch.setattr(_tuning, "MIN_PART_FLOPS", min_flops)
            got = _run(variant, "cpu", 11, torch.float32, T=9, H=32)
            want = _run(variant, "portable", 11, torch.float32, T=9, H=32)
            for name, value in want.items():
                tol = OUT_TOL[torch.float32] if name in ("y", "h_n", "saved") else GRAD_TOL[
                    torch.float32]
                assert_rel_close(got[name], value, tol, f"{name} ({threads} threads)")
    finally:
        torch.set_num_threads(saved)

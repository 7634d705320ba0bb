"""The cpu backend's fused masked kernels (recurrent dropout, zoneout) against the NumPy
reference, beyond the conformance suite of tests/ops/test_masked_ops.py: the batch split
across two threads, backward in many time blocks, variable lengths in both directions,
the gradient probe, each mask alone, and the eval form's zoneout share as a broadcast
view of one number (as the layers pass it). Each call is checked to reach the compiled
kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import backends, ops_masked, reference
from rnnlab.backends import cpu
from rnnlab.backends.contract import (
    GRUSaved,
    GRUWeights,
    LSTMSaved,
    LSTMState,
    LSTMWeights,
    MaskedLSTMSaved,
    Masks,
    Sequence,
)
from rnnlab.backends.cpu import _host, _parallel, _tuning
from rnnlab.backends.cpu.gru import CpuMaskedGRU
from rnnlab.backends.cpu.lstm import CpuMaskedLSTM

VARIANTS = ["lstm", "lstm_proj", "gru", "gru_reset_before"]
MASKS = ["train", "eval", "drop_only", "zoneout_only"]
T, B, I, H = 9, 5, 3, 6
LENGTHS = [9, 4, 7, 1, 9]


def _masks(kind: str, P: int, lstm: bool, rs: np.random.Generator) -> dict:
    """drop_h, keep_h, keep_c as float64 arrays (or None), and for ``eval`` the shares."""
    drop = (rs.random((B, P)) < 0.7) / 0.7 if kind in ("train", "drop_only") else None
    if kind in ("train", "zoneout_only"):
        keep_h = (rs.random((T, B, P)) < 0.3) * 1.0
        keep_c = (rs.random((T, B, H)) < 0.4) * 1.0 if lstm else None
    elif kind == "eval":
        keep_h = np.full((T, B, P), 0.3)
        keep_c = np.full((T, B, H), 0.4) if lstm else None
    else:
        keep_h = keep_c = None
    return {"drop_h": drop, "keep_h": keep_h, "keep_c": keep_c}


def _mask_tensor(kind: str, value: np.ndarray | None, dtype: torch.dtype):
    """The op's mask: eval's shares as the layers pass them, one number expanded."""
    if value is None:
        return None
    if kind == "eval" and value.ndim == 3:
        return torch.tensor(value.flat[0], dtype=dtype).expand(value.shape)
    return torch.tensor(value, dtype=dtype)


@pytest.fixture
def two_threads(monkeypatch, split_in_two):
    """Two parts per call (the split by samples even at this size), backward in blocks of
    one step; yields the list of part counts the cells' runner was given."""
    monkeypatch.setattr(_tuning, "BLOCK_ROWS", 1)
    calls = []
    real = _parallel.run_parts
    monkeypatch.setattr(_host, "run_parts", lambda part, rows: (
        calls.append(len(rows)), real(part, rows))[1])
    return calls


@pytest.fixture
def masked_calls(monkeypatch):
    """Counts the calls of the cpu backend's masked kernels (forward and backward)."""
    counts = {"forward": 0, "backward": 0}
    for cls in (CpuMaskedLSTM, CpuMaskedGRU):
        for name in counts:
            real = getattr(cls, name)

            def counted(self, *args, _real=real, _name=name):
                counts[_name] += 1
                return _real(self, *args)

            monkeypatch.setattr(cls, name, counted)
    return counts


def test_the_cpu_backend_serves_its_fused_masked_kernels():
    assert isinstance(cpu.KERNELS.masked_lstm, CpuMaskedLSTM)
    assert isinstance(cpu.KERNELS.masked_gru, CpuMaskedGRU)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_masked_kernels_split_across_threads_match_the_reference(
    variant, kind, dtype, two_threads, masked_calls
):
    lstm = variant.startswith("lstm")
    P = 4 if variant == "lstm_proj" else H
    G = (4 if lstm else 3) * H
    rs = np.random.default_rng(7)
    a = {"x": rs.normal(size=(T, B, I)), "h0": rs.normal(size=(B, P)),
         "c0": rs.normal(size=(B, H)) if lstm else None,
         "w_ih": rs.normal(size=(G, I)) * 0.6, "w_hh": rs.normal(size=(G, P)) * 0.6,
         "b_ih": rs.normal(size=G), "b_hh": rs.normal(size=G),
         "w_hr": rs.normal(size=(P, H)) * 0.6 if variant == "lstm_proj" else None}
    masks = _masks(kind, P, lstm, rs)
    a["x"][np.arange(T)[:, None] >= np.array(LENGTHS)[None, :]] = np.nan  # never read
    dy, dh_n, dc_n = rs.normal(size=(T, B, P)), rs.normal(size=(B, P)), rs.normal(size=(B, H))
    names = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr") if lstm else (
        "x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")
    mask_names = ("drop_h", "keep_h", "keep_c") if lstm else ("drop_h", "keep_h")
    for reverse in (False, True):
        common = {"lengths": np.array(LENGTHS), "reverse": reverse}
        positional = [a[n] for n in names]
        given = {n: masks[n] for n in mask_names}
        if lstm:
            y_ref, finals_ref, cache = reference.lstm_masked_forward(*positional, **given,
                                                                     **common)
            grads_ref = reference.lstm_masked_backward(dy, dh_n, dc_n, cache)
        else:
            y_ref, h_ref, cache = reference.gru_masked_forward(
                *positional, **given, reset_after=variant == "gru", **common)
            finals_ref, grads_ref = (h_ref,), reference.gru_masked_backward(dy, dh_n, cache)
        t = {n: None if a[n] is None else torch.tensor(a[n], dtype=dtype, requires_grad=True)
             for n in names}
        m = [_mask_tensor(kind, masks[n], dtype) for n in mask_names]
        lengths = torch.tensor(LENGTHS)
        probe = torch.zeros(T, B, P, dtype=dtype, requires_grad=True)
        with backends.use_backend("cpu"):
            if lstm:
                y, h_n, c_n, *_ = ops_masked.lstm_masked(*(t[n] for n in names), *m, lengths,
                                                         probe, reverse)
                finals = (h_n, c_n)
            else:
                y, h_n, _ = ops_masked.gru_masked(*(t[n] for n in names), *m, lengths, probe,
                                                  reverse, variant == "gru")
                finals = (h_n,)
            cotangents = [torch.tensor(g, dtype=dtype) for g in (dy, dh_n, dc_n)]
            loss = sum((o * g).sum() for o, g in zip((y, *finals), cotangents, strict=False))
            loss.backward()
        assert_rel_close(y, y_ref, OUT_TOL[dtype], f"y reverse={reverse}")
        for state, ref in zip(finals, finals_ref, strict=True):
            assert_rel_close(state, ref, OUT_TOL[dtype], f"final state reverse={reverse}")
        for n in names:
            if t[n] is not None:
                assert_rel_close(t[n].grad, grads_ref[n], GRAD_TOL[dtype], f"d{n} {reverse=}")
        assert_rel_close(probe.grad, grads_ref["h"], GRAD_TOL[dtype], f"dh (probe) {reverse=}")
    assert masked_calls == {"forward": 2, "backward": 2}
    assert two_threads and all(n == 2 for n in two_threads), two_threads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_masked_kernels_without_masks_are_the_plain_kernels(variant, dtype):
    """The masked families run the plain cells' loops with the masks as optional
    arguments: given no mask (d = 1, k = 0) their masked branch computes the forward bit
    for bit as the plain branch does (0 · a + 1 · b is b exactly), and every gradient to
    a few units in the last place (LLVM contracts the two passes' a · b + c into fused
    multiply-adds at different places)."""
    lstm = variant.startswith("lstm")
    P = 4 if variant == "lstm_proj" else H
    G = (4 if lstm else 3) * H
    g = torch.Generator().manual_seed(3)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    no_masks = Masks(None, None, None)
    lengths = torch.tensor(LENGTHS)
    dy, dh_n = rand(T, B, P), rand(B, P)
    for reverse in (False, True):
        seq = Sequence(rand(T, B, I), lengths, reverse)
        if lstm:
            w = LSTMWeights(rand(G, I), rand(G, P) * 0.5, rand(G), rand(G),
                            rand(P, H) * 0.5 if variant == "lstm_proj" else None)
            state, d_state = LSTMState(rand(B, P), rand(B, H)), LSTMState(dh_n, rand(B, H))
            plain = cpu.KERNELS.lstm.forward(w, seq, state, None)
            masked = cpu.KERNELS.masked_lstm.forward(w, seq, state, no_masks, None)
            assert torch.equal(masked.c_tilde, masked.c)  # c̃ = c without zoneout
            plain_grads = cpu.KERNELS.lstm.backward(
                w, seq, state, LSTMSaved(plain.y, plain.gates, plain.c), dy, d_state, True, True)
            masked_grads = cpu.KERNELS.masked_lstm.backward(
                w, seq, state, no_masks,
                MaskedLSTMSaved(masked.y, masked.gates, masked.c, masked.c_tilde), dy,
                d_state, True, True)
            outputs = list(zip(plain, masked[:5], strict=True))
        else:
            reset_after = variant == "gru"
            w = GRUWeights(rand(G, I), rand(G, H) * 0.5, rand(G), rand(G))
            h0 = rand(B, H)
            plain = cpu.KERNELS.gru.forward(w, seq, h0, None, reset_after)
            masked = cpu.KERNELS.masked_gru.forward(w, seq, h0, no_masks, None, reset_after)
            plain_grads = cpu.KERNELS.gru.backward(
                w, seq, h0, GRUSaved(plain.y, plain.gates), dy, dh_n, reset_after, True, True)
            masked_grads = cpu.KERNELS.masked_gru.backward(
                w, seq, h0, no_masks, GRUSaved(masked.y, masked.gates), dy, dh_n,
                reset_after, True, True)
            outputs = list(zip(plain, masked, strict=True))
        for ours, theirs in outputs:
            assert ours.shape == theirs.shape
            assert torch.equal(ours, theirs)
        for ours, theirs in zip(plain_grads, masked_grads, strict=True):
            assert ours.shape == theirs.shape
            scale = ours.abs().max().item() if ours.numel() else 1.0
            ulps = 8 * torch.finfo(dtype).eps * max(scale, 1.0)
            torch.testing.assert_close(ours, theirs, rtol=0, atol=ulps)

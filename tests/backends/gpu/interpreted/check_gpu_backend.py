"""Checks of the gpu backend that the shared conformance suite does not make: bf16,
both execution paths on the same problem, sizes that span several programs and tiles,
the layer-normalised cells' row kernels (that the backend runs them; several row
programs, padded units and gate slots), the min cells' scan kernels (several chunks of
steps, a partial last chunk, two unit blocks, bf16, stacked layers), and the backend's
selection rules.

Run by ../test_interpreter.py in a subprocess with TRITON_INTERPRET=1 (the kernels go
through Triton's CPU interpreter); on a CUDA machine, RNNLAB_GPU_TEST_DEVICE=cuda runs
the same checks on the GPU.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import threading

import pytest
import torch
import triton

import rnnlab
import rnnlab.nn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import backends, ops, ops_ln, ops_masked, ops_min, reference
from rnnlab import nn as rnn_nn
from rnnlab.backends import gpu
from rnnlab.backends.gpu import _common as C
from rnnlab.backends.gpu import _coop as X
from rnnlab.backends.gpu import _tuning, masked_gru, masked_lstm
from rnnlab.backends.gpu import gru as gpu_gru
from rnnlab.backends.gpu import lstm as gpu_lstm
from rnnlab.backends.gpu import min as gpu_min
from rnnlab.backends.gpu.lngru import GpuLNGRU
from rnnlab.backends.gpu.lnlstm import GpuLNLSTM, row_settings

DEVICE = torch.device(os.environ.get("RNNLAB_GPU_TEST_DEVICE", "cpu"))
VARIANTS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "gru_reset_before"]
LN_VARIANTS = ["lnlstm", "lngru"]  # one path only (their row kernels): no path fixture
# bf16 inputs, fp32 state and accumulation: errors of a few bf16 ulps (2^-8) of the largest
# value, growing mildly with T through the recurrence.
BF16_OUT_TOL, BF16_GRAD_TOL = 3e-2, 6e-2


def _problem(variant: str, T: int, B: int, I: int, H: int, seed: int, lengths: bool):
    """Random float64 parameters and inputs (None where the variant has none), lengths."""
    family = variant.split("_")[0]
    G = {"rnn": 1, "lstm": 4, "gru": 3, "lnlstm": 4, "lngru": 3}[family] * H
    P = max(1, H // 2) if variant == "lstm_proj" else H
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    p = {
        "x": rand(T, B, I), "h0": rand(B, P),
        "w_ih": rand(G, I, scale=I**-0.5), "w_hh": rand(G, P, scale=P**-0.5),
        "b_ih": rand(G, scale=0.3), "b_hh": rand(G, scale=0.3),
    }
    if family == "lstm":
        p["c0"] = rand(B, H)
        p["w_hr"] = rand(P, H, scale=H**-0.5) if variant == "lstm_proj" else None
    if family in LN_VARIANTS:
        p["gamma_ih"], p["gamma_hh"] = 1 + rand(G, scale=0.3), 1 + rand(G, scale=0.3)
    if family == "lnlstm":
        p["c0"], p["gamma_c"], p["beta_c"] = rand(B, H), 1 + rand(H, scale=0.3), rand(H, scale=0.3)
    lens = torch.randint(1, T + 1, (B,), generator=g) if lengths else None
    if lens is not None:
        lens[0] = T
    return p, lens


def _run(variant, p, lens, reverse, dtype, backend):
    """Forward and every gradient of sum(y·dy) + sum(h_n·dh) (+ c_n) through the op."""
    family = variant.split("_")[0]
    device = DEVICE if backend == "gpu" else torch.device("cpu")
    t = {
        k: (v.to(device=device, dtype=dtype).requires_grad_() if v is not None else None)
        for k, v in p.items()
    }
    T, B = p["x"].shape[:2]
    P = p["h0"].shape[1]
    probe = torch.zeros(T, B, P, device=device, dtype=dtype, requires_grad=True)
    ln = lens.to(device) if lens is not None else None
    with rnnlab.use_backend(backend):
        if family == "lnlstm":
            y, h, c, gates, cells = ops_ln.lnlstm(
                t["x"], t["h0"], t["c0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"],
                t["gamma_ih"], t["gamma_hh"], t["gamma_c"], t["beta_c"], ln, probe, reverse,
            )
            finals, saved = [h, c], [gates, cells]
        elif family == "lngru":
            y, h, gates = ops_ln.lngru(
                t["x"], t["h0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], t["gamma_ih"],
                t["gamma_hh"], ln, probe, reverse,
            )
            finals, saved = [h], [gates]
        elif family == "lstm":
            y, h, c, gates, cells = ops.lstm(
                t["x"], t["h0"], t["c0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"],
                t["w_hr"], ln, probe, reverse,
            )
            finals, saved = [h, c], [gates, cells]
        elif family == "gru":
            y, h, gates = ops.gru(
                t["x"], t["h0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], ln, probe, reverse,
                variant == "gru",
            )
            finals, saved = [h], [gates]
        else:
            y, h, a = ops.rnn(
                t["x"], t["h0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], ln, probe, reverse,
                variant == "rnn_relu",
            )
            finals, saved = [h], [a]
        g = torch.Generator().manual_seed(99)
        loss = sum(
            (v.float() * torch.randn(v.shape, generator=g).to(device)).sum()
            for v in [y, *finals]
        )
        loss.backward()
    grads = {k: v.grad for k, v in t.items() if v is not None}
    grads["h_probe"] = probe.grad
    cpu = [v.detach().cpu().double() for v in [y, *finals, *saved]]
    return cpu, {k: v.cpu().double() for k, v in grads.items()}


def _compare(variant, p, lens, reverse, dtype, out_tol, grad_tol):
    if dtype == torch.bfloat16:  # the oracle sees the same rounded inputs
        p = {k: (v.bfloat16().double() if v is not None else None) for k, v in p.items()}
    outs, grads = _run(variant, p, lens, reverse, dtype, "gpu")
    outs_ref, grads_ref = _run(variant, p, lens, reverse, torch.float64, "portable")
    for k, (a, b) in enumerate(zip(outs, outs_ref, strict=True)):
        assert_rel_close(a, b, out_tol, f"{variant} output {k}")
    for name, g in grads.items():
        assert_rel_close(g, grads_ref[name], grad_tol, f"{variant} d{name}")


# Execution paths as environment settings; CUDA graphs only where there is CUDA.
PATHS = {
    "persistent": {"RNNLAB_GPU_PATH": "persistent"},
    "cooperative": {"RNNLAB_GPU_PATH": "cooperative"},
    "tiled": {"RNNLAB_GPU_PATH": "tiled"},
    **({"graphs": {"RNNLAB_GPU_PATH": "tiled", "RNNLAB_GPU_GRAPHS": "1"},
        "cooperative-stepwise": {"RNNLAB_GPU_PATH": "cooperative", "RNNLAB_GPU_GRID_SYNC": "0"}}
       if DEVICE.type == "cuda" else {}),
}


@pytest.fixture(params=sorted(PATHS))
def path(request, monkeypatch):
    for name, value in PATHS[request.param].items():
        monkeypatch.setenv(name, value)
    return request.param


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_matches_float64(variant, reverse, path):
    p, lens = _problem(variant, T=5, B=3, I=4, H=8, seed=3, lengths=True)
    _compare(variant, p, lens, reverse, torch.bfloat16, BF16_OUT_TOL, BF16_GRAD_TOL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_several_programs_and_padded_blocks(variant, path):
    """B = 19 spans two batch programs / tiles; H = 20 pads to 32 (tl.dot blocks), and in
    the tiled path spans hidden tiles only partly filled."""
    p, lens = _problem(variant, T=4, B=19, I=3, H=20, seed=5, lengths=True)
    _compare(variant, p, lens, True, torch.float32, 1e-5, 1e-4)


@pytest.mark.parametrize("variant", ["lstm", "gru"])
def test_hidden_larger_than_a_tile(variant, monkeypatch):
    """H = 70 > TILE_H: the tiled path over 2 hidden tiles."""
    monkeypatch.setenv("RNNLAB_GPU_PATH", "tiled")
    p, lens = _problem(variant, T=3, B=2, I=3, H=70, seed=7, lengths=False)
    _compare(variant, p, lens, False, torch.float32, 1e-5, 1e-4)


def test_layer_norm_families_run_the_triton_row_kernels():
    """The gpu backend's lnlstm and lngru are its own Triton kernels, not portable's."""
    assert type(gpu.KERNELS.lnlstm) is GpuLNLSTM
    assert type(gpu.KERNELS.lngru) is GpuLNGRU


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("variant", LN_VARIANTS)
def test_layer_norm_bf16_matches_float64(variant, reverse):
    p, lens = _problem(variant, T=5, B=3, I=4, H=8, seed=3, lengths=True)
    _compare(variant, p, lens, reverse, torch.bfloat16, BF16_OUT_TOL, BF16_GRAD_TOL)


@pytest.mark.parametrize(("block", "B", "programs"),
                         [(_tuning.LN_BLOCK, 19, 2), (256, 19, 10), (128, 7, 7)],
                         ids=["16rows", "2rows", "1row"])
@pytest.mark.parametrize("variant", LN_VARIANTS)
def test_layer_norm_row_programs_and_padded_blocks(variant, block, B, programs, monkeypatch):
    """H = 20 pads to 32 units (and the GRU's 3 gates to 4 slots); B = 19 rows over 2
    programs of 16 rows or 10 of 2 (the last one padded), B = 7 over 7 programs of 1 (the
    row block lowered)."""
    monkeypatch.setattr(_tuning, "LN_BLOCK", block)
    grid, settings = row_settings(B, 20)
    assert settings["HP"] == 32 and grid[0] == programs
    p, lens = _problem(variant, T=4, B=B, I=3, H=20, seed=5, lengths=True)
    _compare(variant, p, lens, True, torch.float32, 1e-5, 1e-4)


@pytest.mark.parametrize("variant", LN_VARIANTS)
def test_layer_norm_wide_rows(variant):
    """H = 70 pads to 128 units: 8 rows a program, B = 11 over 2 programs, 8 warps."""
    grid, settings = row_settings(11, 70)
    assert (grid[0], settings["ROWS"], settings["HP"], settings["num_warps"]) == (2, 8, 128, 8)
    p, lens = _problem(variant, T=3, B=11, I=3, H=70, seed=7, lengths=True)
    _compare(variant, p, lens, False, torch.float32, 1e-5, 1e-4)


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_layer_norm_stream_equals_the_layer(family):
    """A layer-normalised layer streams through its inference op (the gpu forward, on a
    copy of the layer per chunk): equal to the whole sequence on the portable backend."""
    torch.manual_seed(0)
    Layer = rnnlab.nn.LSTM if family == "lstm" else rnnlab.nn.GRU
    layer = Layer(3, 5, num_layers=2, layer_norm=True).to(DEVICE)
    x = torch.randn(7, 3, device=DEVICE)
    with torch.no_grad(), rnnlab.use_backend("portable"):
        want, _ = layer(x)
    with rnnlab.use_backend("gpu"):
        stream = rnnlab.nn.Stream(layer)
        got = torch.cat([stream.step(x[:3]), stream.step(x[3])[None], stream.step(x[4:])])
    assert_rel_close(got.cpu(), want.cpu(), 1e-5, f"ln{family} stream")


COOP_VARIANTS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]  # the cells the cooperative path runs


@pytest.mark.parametrize("hold", ["1", "0"], ids=["held", "streamed"])
@pytest.mark.parametrize("variant", COOP_VARIANTS)
def test_cooperative_row_tiles_and_wide_slices(variant, hold, monkeypatch):
    """Two row tiles (16 rows each, B = 19) and few programs, so each slice is wider than
    the narrowest (BH doubles until the grid fits); weights held and streamed."""
    monkeypatch.setenv("RNNLAB_GPU_PATH", "cooperative")
    monkeypatch.setenv("RNNLAB_GPU_HOLD", hold)
    monkeypatch.setattr(_tuning, "COOP_MAX_ROWS", 16)
    monkeypatch.setattr(X, "INTERPRETER_PROGRAMS", 4)
    H = 40
    lay = X.plan(19, H, X_SLOTS[variant], DEVICE)
    assert lay is not None and lay.NR == 2 and lay.NS * lay.NR <= 4 and lay.BH >= 16, lay
    p, lens = _problem(variant, T=4, B=19, I=3, H=H, seed=11, lengths=True)
    _compare(variant, p, lens, True, torch.float32, 1e-5, 1e-4)


X_SLOTS = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 4}


@pytest.mark.skipif(DEVICE.type == "cuda", reason="forces the barrier into the interpreter")
def test_barrier_timeout_warns_and_recomputes_on_the_tiled_path(monkeypatch):
    """Programs that never meet (here: run one after another by the interpreter, with a
    poll limit of 3) flag the timeout; the host warns, turns the path off for the process
    and returns the tiled path's correct result."""
    monkeypatch.setenv("RNNLAB_GPU_PATH", "cooperative")
    monkeypatch.setattr(X, "grid_sync_enabled", lambda device: True)
    monkeypatch.setattr(X, "BARRIER_POLLS", triton.language.constexpr(3))
    monkeypatch.setattr(X, "_disabled", [])
    p, lens = _problem("lstm", T=3, B=2, I=3, H=12, seed=17, lengths=False)  # 3 slices
    with pytest.warns(RuntimeWarning, match="did not all reach a barrier"):
        _compare("lstm", p, lens, False, torch.float32, 1e-5, 1e-4)
    assert X._disabled and X.plan(2, 12, 4, DEVICE) is None
    assert C.choose_path(10**9, X.plan(2, 12, 4, DEVICE)) == "tiled"


MASKED_VARIANTS = ["lstm", "lstm_proj", "gru", "gru_reset_before"]


def test_masked_families_are_the_triton_kernels():
    kernels = backends._REGISTRY["gpu"].load()
    assert isinstance(kernels.masked_lstm, masked_lstm.GpuMaskedLSTM)
    assert isinstance(kernels.masked_gru, masked_gru.GpuMaskedGRU)


def _masked_masks(variant, T, B, P, H, seed, training):
    """Fixed masks (float64): training, a dropout multiplier d and 0/1 zoneout shares;
    eval, no d and the shares as broadcast views of one number, as the layers pass them."""
    g = torch.Generator().manual_seed(seed)
    lstm = variant.startswith("lstm")
    if not training:
        share = torch.tensor(0.3, dtype=torch.float64)
        return {"drop_h": None, "keep_h": share.expand(T, B, P),
                "keep_c": (share + 0.1).expand(T, B, H) if lstm else None}
    return {
        "drop_h": (torch.rand(B, P, generator=g, dtype=torch.float64) < 0.7) / 0.7,
        "keep_h": (torch.rand(T, B, P, generator=g, dtype=torch.float64) < 0.3).double(),
        "keep_c": ((torch.rand(T, B, H, generator=g, dtype=torch.float64) < 0.4).double()
                   if lstm else None),
    }


def _masked_compare(variant, p, masks, lens, reverse, dtype, out_tol, grad_tol):
    """The masked op on the gpu backend against the masked NumPy reference: outputs, final
    states, c and c̃ (LSTM) or r, z, n (GRU), every gradient and ∂L/∂h_t."""
    if dtype == torch.bfloat16:  # the oracle sees the same rounded inputs and masks
        p, masks = ({k: (v.bfloat16().double() if v is not None else None)
                     for k, v in d.items()} for d in (p, masks))
    lstm = variant.startswith("lstm")
    T, B = p["x"].shape[:2]
    P, H = p["h0"].shape[1], p["w_hh"].shape[0] // (4 if lstm else 3)
    g = torch.Generator().manual_seed(7)
    dy, dh_n, dc_n = (torch.randn(*shape, generator=g, dtype=torch.float64)
                      for shape in ((T, B, P), (B, P), (B, H)))
    names = (["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"] if lstm
             else ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"])
    t = {k: p[k].to(DEVICE, dtype).requires_grad_() if p[k] is not None else None
         for k in names}
    m = {k: v.to(DEVICE, dtype) if v is not None else None for k, v in masks.items()}
    probe = torch.zeros(T, B, P, device=DEVICE, dtype=dtype, requires_grad=True)
    ln = lens.to(DEVICE) if lens is not None else None
    with rnnlab.use_backend("gpu"):
        if lstm:
            y, h, c, _, cells, c_tilde = ops_masked.lstm_masked(
                *(t[k] for k in names), m["drop_h"], m["keep_h"], m["keep_c"], ln, probe,
                reverse,
            )
            finals, saved = [h, c], {"c": cells, "c_tilde": c_tilde}
        else:
            y, h, gates = ops_masked.gru_masked(
                *(t[k] for k in names), m["drop_h"], m["keep_h"], ln, probe, reverse,
                variant == "gru",
            )
            finals, saved = [h], dict(zip("rzn", gates.split(H, dim=2)[:3], strict=True))
        loss = sum((v.float() * w.to(DEVICE)).sum()
                   for v, w in zip([y, *finals], [dy, dh_n, dc_n], strict=False))
        loss.backward()
    arrays = {k: p[k].numpy() if p[k] is not None else None for k in names}
    mask_arrays = {k: v.numpy() for k, v in masks.items() if v is not None}
    common = {"lengths": lens.numpy() if lens is not None else None, "reverse": reverse}
    if lstm:
        y_ref, finals_ref, cache = reference.lstm_masked_forward(
            *arrays.values(), **mask_arrays, **common
        )
        grads_ref = reference.lstm_masked_backward(dy.numpy(), dh_n.numpy(), dc_n.numpy(), cache)
    else:
        y_ref, h_ref, cache = reference.gru_masked_forward(
            *arrays.values(), **mask_arrays, reset_after=variant == "gru", **common
        )
        finals_ref = (h_ref,)
        grads_ref = reference.gru_masked_backward(dy.numpy(), dh_n.numpy(), cache)
    assert_rel_close(y.cpu(), y_ref, out_tol, f"{variant} y")
    for state, ref in zip(finals, finals_ref, strict=True):
        assert_rel_close(state.cpu(), ref, out_tol, f"{variant} final state")
    for name, value in saved.items():
        assert_rel_close(value.cpu(), cache.gates[name], out_tol, f"{variant} {name}")
    for name, leaf in t.items():
        if leaf is not None:
            assert_rel_close(leaf.grad.cpu(), grads_ref[name], grad_tol, f"{variant} d{name}")
    assert_rel_close(probe.grad.cpu(), grads_ref["h"], grad_tol, f"{variant} dh (probe)")


@pytest.fixture
def masked_calls(monkeypatch):
    """Counts the masked families' tiled loops, forward and backward (the proof that the
    masked ops ran the Triton kernels)."""
    calls = []

    def spy(name, inner):
        def counted(*args, **kwargs):
            calls.append(name)
            return inner(*args, **kwargs)
        return counted

    for module in (masked_lstm, masked_gru):
        for name in ("_tiled_forward", "_tiled_backward"):
            monkeypatch.setattr(module, name, spy(name, getattr(module, name)))
    return calls


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("variant", MASKED_VARIANTS)
def test_masked_kernels_match_the_reference(variant, reverse, training, masked_calls):
    """B = 19 spans two row tiles, H = 20 pads the hidden tile (P = 10 with a projection),
    lengths end sequences early (reverse: padding first in processing order)."""
    p, lens = _problem(variant, T=4, B=19, I=3, H=20, seed=29, lengths=True)
    masks = _masked_masks(variant, 4, 19, p["h0"].shape[1], 20, seed=31, training=training)
    _masked_compare(variant, p, masks, lens, reverse, torch.float32, OUT_TOL[torch.float32],
                    GRAD_TOL[torch.float32])
    assert masked_calls == ["_tiled_forward", "_tiled_backward"]


@pytest.mark.parametrize("variant", ["lstm", "gru"])
def test_masked_kernels_over_two_hidden_tiles(variant, masked_calls):
    """H = 70 > TILE_H: two hidden tiles, the second partly filled."""
    p, lens = _problem(variant, T=3, B=2, I=3, H=70, seed=37, lengths=False)
    masks = _masked_masks(variant, 3, 2, 70, 70, seed=41, training=True)
    _masked_compare(variant, p, masks, lens, False, torch.float32, OUT_TOL[torch.float32],
                    GRAD_TOL[torch.float32])
    assert masked_calls == ["_tiled_forward", "_tiled_backward"]


@pytest.mark.parametrize("variant", ["lstm_proj", "gru_reset_before"])
def test_masked_ops_pass_opcheck_on_the_gpu_backend(variant, masked_calls):
    """Schema, fake shapes and strides, autograd registration of the masked ops with their
    outputs from the Triton kernels (eval masks: broadcast views)."""
    p, lens = _problem(variant, T=3, B=2, I=3, H=5, seed=61, lengths=True)
    masks = _masked_masks(variant, 3, 2, p["h0"].shape[1], 5, seed=67, training=False)
    lstm = variant.startswith("lstm")
    names = (["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"] if lstm
             else ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"])
    args = [p[k].to(DEVICE, torch.float32).requires_grad_() if p[k] is not None else None
            for k in names]
    args += [masks[k].to(DEVICE, torch.float32) if masks[k] is not None else None
             for k in (("drop_h", "keep_h", "keep_c") if lstm else ("drop_h", "keep_h"))]
    tail = [lens.to(DEVICE), None, True] + ([] if lstm else [variant == "gru"])
    op = ops_masked.lstm_masked if lstm else ops_masked.gru_masked
    with rnnlab.use_backend("gpu"):
        torch.library.opcheck(op, (*args, *tail))
    assert "_tiled_forward" in masked_calls and "_tiled_backward" in masked_calls


@pytest.mark.parametrize("variant", MASKED_VARIANTS)
def test_masked_bf16_matches_float64(variant, masked_calls):
    p, lens = _problem(variant, T=5, B=3, I=4, H=8, seed=43, lengths=True)
    masks = _masked_masks(variant, 5, 3, p["h0"].shape[1], 8, seed=47, training=True)
    _masked_compare(variant, p, masks, lens, True, torch.bfloat16, BF16_OUT_TOL, BF16_GRAD_TOL)
    assert masked_calls == ["_tiled_forward", "_tiled_backward"]


def _layer_run(family, backend, options, seed):
    """A stacked bidirectional float32 layer with these regularisers in training, lengths
    given: its output and parameter gradients, masks drawn from ``seed``."""
    torch.manual_seed(3)
    make = rnn_nn.LSTM if family == "lstm" else rnn_nn.GRU
    layer = make(3, 20, num_layers=2, bidirectional=True, **options).to(DEVICE).train()
    x = torch.randn(4, 19, 3).to(DEVICE)
    lengths = torch.randint(1, 5, (19,), generator=torch.Generator().manual_seed(seed))
    with rnnlab.use_backend(backend):
        torch.manual_seed(seed)
        y = layer(x, lengths=lengths)[0]
        (y * torch.linspace(-1, 1, y.numel()).view_as(y).to(DEVICE)).sum().backward()
    return y.detach().cpu(), {k: v.grad.cpu() for k, v in layer.named_parameters()}


def _layer_compare(family, options, seed):
    y, grads = _layer_run(family, "gpu", options, seed)
    y_ref, grads_ref = _layer_run(family, "portable", options, seed)
    assert_rel_close(y, y_ref, OUT_TOL[torch.float32], f"{family} y")
    for name, g in grads.items():
        assert_rel_close(g, grads_ref[name], GRAD_TOL[torch.float32], f"{family} {name}")


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_regularised_layer_runs_the_masked_kernels(family, masked_calls):
    """weight_drop, recurrent_dropout and zoneout at once: the gpu backend's layer equals
    the portable one's (float32, the same masks from the seed), through the masked
    kernels in each of 2 layers × 2 directions."""
    options = dict(weight_drop=0.3, recurrent_dropout=0.3, zoneout=0.2)
    _layer_compare(family, options, seed=53)
    assert masked_calls == ["_tiled_forward"] * 4 + ["_tiled_backward"] * 4


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_weight_drop_alone_runs_the_plain_kernels(family, masked_calls, monkeypatch):
    """weight_drop only changes the weight handed to the plain op: the plain gpu kernels
    run (no masked one) and the layer equals the portable one's."""
    monkeypatch.setenv("RNNLAB_GPU_PATH", "tiled")
    plain = []
    module = gpu_lstm if family == "lstm" else gpu_gru
    inner = module._tiled_forward

    def counted(*args, **kwargs):
        plain.append(True)
        return inner(*args, **kwargs)

    monkeypatch.setattr(module, "_tiled_forward", counted)
    _layer_compare(family, dict(weight_drop=0.5), seed=59)
    assert len(plain) == 4 and not masked_calls


def test_held_weights_rule(monkeypatch):
    lay = X.layout(B=16, H=256, slots=4, programs=132)
    fwd = X.launch_settings(lay, 256, 4 * lay.BH, 2)  # LSTM bf16: an 8 KiB slice, held
    assert fwd["HELD"] and fwd["KQ"] == 64
    assert not X.launch_settings(lay, 1024, lay.BU, 2)["HELD"]  # backward: 32 KiB
    assert not X.launch_settings(lay, 256, 4 * lay.BH, 2, hold_ok=False)["HELD"]
    wide = X.layout(B=64, H=256, slots=4, programs=132)  # 64 rows: never held
    assert not X.launch_settings(wide, 256, 4 * wide.BH, 2)["HELD"]
    monkeypatch.setenv("RNNLAB_GPU_HOLD", "maybe")
    with pytest.raises(ValueError, match="RNNLAB_GPU_HOLD='maybe'"):
        X.hold_enabled()


def test_cooperative_layout_rules():
    lay = X.layout(B=16, H=1024, slots=4, programs=132)  # H100: LSTM, B = 16
    assert (lay.BB, lay.NR, lay.BH, lay.NS, lay.BU) == (16, 1, 8, 128, 16)
    lay = X.layout(B=64, H=1024, slots=1, programs=132)  # RNN: 16 units at least
    assert (lay.BB, lay.BH, lay.NS) == (64, 16, 64)
    lay = X.layout(B=200, H=1024, slots=4, programs=132)  # 4 row tiles: wider slices
    assert (lay.NR, lay.BH, lay.NS) == (4, 32, 32) and lay.NS * lay.NR <= 132
    assert X.layout(B=4096, H=4096, slots=4, programs=132) is None  # slices past COOP_MAX_UNITS


@pytest.mark.parametrize("slots,gates", [(1, 1), (4, 4), (4, 3)])
def test_packed_slices_hold_the_right_weights(slots, gates):
    H, K = 10, 10
    w = torch.randn(gates * H, K)
    lay = X.layout(B=3, H=H, slots=slots, programs=3)
    fwd = X.pack_forward(w, slots, lay)
    assert fwd.shape == (lay.NS, K, lay.BH * slots)
    bwd = X.pack_backward(w, lay)
    assert bwd.shape == (lay.NS, gates * H, lay.BU)
    for p in range(lay.NS):
        for j in range(lay.BH):
            unit = p * lay.BH + j
            for g in range(slots):
                expected = w[g * H + unit] if unit < H and g < gates else torch.zeros(K)
                assert torch.equal(fwd[p, :, j * slots + g], expected), (p, j, g)
            expected = w[:, unit] if unit < H else torch.zeros(gates * H)
            assert torch.equal(bwd[p, :, j], expected)
        assert not bwd[p, :, lay.BH:].any()


def test_default_path_until_verified_on_hardware(monkeypatch):
    """Unset (or empty) RNNLAB_GPU_PATH means tiled until the other paths are measured on
    a GPU: the sizes where auto would take persistent or cooperative stay tiled."""
    assert C.DEFAULT_PATH == ("auto" if C.HARDWARE_VERIFIED else "tiled")
    lay_one_tile = X.layout(B=8, H=512, slots=4, programs=132)
    monkeypatch.setattr(C, "DEFAULT_PATH", "tiled")
    for unset in (None, ""):
        if unset is None:
            monkeypatch.delenv("RNNLAB_GPU_PATH", raising=False)
        else:
            monkeypatch.setenv("RNNLAB_GPU_PATH", unset)
        assert C.choose_path(_tuning.ON_CHIP_BYTES, lay_one_tile) == "tiled"
        assert C.choose_path(_tuning.ON_CHIP_BYTES + 1, lay_one_tile) == "tiled"


def test_path_rules(monkeypatch):
    lay_one_tile = X.layout(B=8, H=512, slots=4, programs=132)
    lay_two_tiles = X.layout(B=100, H=512, slots=4, programs=132)
    monkeypatch.setenv("RNNLAB_GPU_PATH", "auto")
    assert C.choose_path(_tuning.ON_CHIP_BYTES, lay_one_tile) == "persistent"
    assert C.choose_path(_tuning.ON_CHIP_BYTES + 1, lay_one_tile) == "cooperative"
    assert C.choose_path(_tuning.ON_CHIP_BYTES + 1, lay_two_tiles) == "tiled"
    assert C.choose_path(None, None) == "tiled"
    monkeypatch.setenv("RNNLAB_GPU_PATH", "cooperative")
    assert C.choose_path(1, lay_two_tiles) == "cooperative"
    assert C.choose_path(1, None) == "tiled"  # a variant the cooperative kernel lacks
    monkeypatch.setenv("RNNLAB_GPU_PATH", "persistent")
    assert C.choose_path(None, lay_one_tile) == "tiled"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_outputs_never_alias_inputs(path, dtype):
    p, _ = _problem("gru", T=3, B=2, I=3, H=4, seed=1, lengths=False)
    x, h0, w_ih, w_hh = (p[k].to(DEVICE, dtype) for k in ("x", "h0", "w_ih", "w_hh"))
    h0_before = h0.clone()
    with rnnlab.use_backend("gpu"):
        y, h_n, gates = ops.gru(x, h0, w_ih, w_hh, None, None, None, None, False, True)
    inputs = [x, h0, w_ih, w_hh]
    for out in (y, h_n, gates):
        assert all(out.untyped_storage().data_ptr() != i.untyped_storage().data_ptr()
                   for i in inputs)
    assert torch.equal(h0, h0_before), "the initial state was modified"


def test_selection_rules():
    cpu = torch.device("cpu")
    gpu = backends._REGISTRY["gpu"]
    assert not gpu.supports(cpu, torch.float32), "never chosen automatically on CPU"
    assert backends.select(cpu, torch.float32) is not backends._REGISTRY["gpu"].load()
    with rnnlab.use_backend("gpu"):
        assert gpu.supports(cpu, torch.float32) == (os.environ.get("TRITON_INTERPRET") == "1")
        assert not gpu.supports(cpu, torch.float64)
        assert not gpu.supports(cpu, torch.float16)
    assert gpu.supports(torch.device("cuda"), torch.bfloat16)
    assert not gpu.supports(torch.device("cuda"), torch.float64)
    # float64 and float16 CUDA tensors, which torch.nn runs, take the portable backend.
    portable = backends._REGISTRY["portable"].load()
    for dtype in (torch.float64, torch.float16):
        assert backends.select(torch.device("cuda"), dtype) is portable
    assert backends.select(torch.device("cuda"), torch.float32) is gpu.load()


def test_unknown_path_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RNNLAB_GPU_PATH", "fastest")
    p, lens = _problem("rnn_tanh", T=2, B=1, I=2, H=3, seed=0, lengths=False)
    with pytest.raises(ValueError, match="RNNLAB_GPU_PATH='fastest'"):
        _run("rnn_tanh", p, lens, False, torch.float32, "gpu")


def test_exact_fp32_never_takes_the_persistent_kernel_on_a_gpu(monkeypatch):
    """Triton cannot build the persistent kernels' exact-fp32 products for sm_90: on a
    GPU, fp32 at precision "highest" has no persistent path; bf16, or fp32 with TF32-class
    products allowed, has."""
    monkeypatch.setattr(C, "interpreting", lambda device: False)
    f32, bf16 = torch.empty(0), torch.empty(0, dtype=torch.bfloat16)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert C.on_chip_bytes(100, f32) is None
        assert C.on_chip_bytes(100, bf16) == 200
        torch.set_float32_matmul_precision("high")
        assert C.on_chip_bytes(100, f32) == 400
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.skipif(DEVICE.type != "cuda", reason="CUDA graphs need CUDA")
def test_cooperative_path_inside_a_cuda_graph(monkeypatch):
    """Captured in a user's CUDA graph the cooperative kernel runs a launch per step (no
    barrier flag to read back): replay equals the eager call."""
    monkeypatch.setenv("RNNLAB_GPU_PATH", "cooperative")
    p, _ = _problem("lstm", T=6, B=3, I=4, H=40, seed=19, lengths=False)
    t = {k: v.to(DEVICE, torch.float32) if v is not None else None for k, v in p.items()}
    args = (t["x"], t["h0"], t["c0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], None, None,
            None, False)
    with rnnlab.use_backend("gpu"):
        eager = ops.lstm(*args)[0].clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            ops.lstm(*args)  # warm-up: compiles the kernels outside the capture
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = ops.lstm(*args)[0]
        graph.replay()
    torch.testing.assert_close(captured, eager, rtol=1e-5, atol=1e-6)


@contextlib.contextmanager
def _programs_as_threads(timeout_s: float = 120.0):
    """Make Triton's interpreter run a launch's programs at the same time, one thread
    each, instead of one after another — so programs can meet at a grid barrier.

    The interpreter's loop sets the program index, then calls the kernel, for each grid
    point. Here the index becomes thread-local, and the first call of a launch starts
    every program in its own thread and waits for all (later calls of that launch do
    nothing). Yields a list that records, per launch, how many programs ran at once.
    """
    from triton.runtime import interpreter as interp

    local = threading.local()
    launches: list[int] = []
    running = {"executor": None, "kernel": None}
    builder_cls, executor_cls = interp.InterpreterBuilder, interp.GridExecutor
    saved = {"call": executor_cls.__call__, "set": builder_cls.set_grid_idx,
             "idx": builder_cls.__dict__.get("grid_idx")}

    def all_at_once(kernel):
        done = []

        def run_all(**args):
            if done:
                return
            done.append(True)
            nx, ny, nz = interp.interpreter_builder.grid_dim
            errors, alive = [], [0]
            lock = threading.Lock()

            def program(x, y, z):
                try:
                    interp.interpreter_builder.set_grid_idx(x, y, z)
                    with lock:
                        alive[0] += 1
                    kernel(**args)
                except BaseException as err:  # reported below, in the test's thread
                    errors.append(err)

            threads = [threading.Thread(target=program, args=(x, y, z), daemon=True)
                       for x in range(nx) for y in range(ny) for z in range(nz)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout_s)
            if any(thread.is_alive() for thread in threads):
                errors.append(TimeoutError("programs still waiting: a barrier deadlock"))
            launches.append(alive[0])
            if errors:
                raise errors[0]

        return run_all

    def set_grid_idx(builder, x, y, z):
        local.idx = (x, y, z)
        executor = running["executor"]
        if (executor is not None and threading.current_thread() is threading.main_thread()
                and executor.fn is running["kernel"]):
            executor.fn = all_at_once(running["kernel"])

    def call(executor, *args, **kwargs):
        running.update(executor=executor, kernel=executor.fn)
        try:
            return saved["call"](executor, *args, **kwargs)
        finally:
            executor.fn = running["kernel"]
            running.update(executor=None, kernel=None)

    builder_cls.grid_idx = property(lambda self: getattr(local, "idx", None),
                                    lambda self, value: setattr(local, "idx", value))
    builder_cls.set_grid_idx = set_grid_idx
    executor_cls.__call__ = call
    try:
        yield launches
    finally:
        executor_cls.__call__ = saved["call"]
        builder_cls.set_grid_idx = saved["set"]
        if saved["idx"] is None:
            del builder_cls.grid_idx
        else:
            builder_cls.grid_idx = saved["idx"]


@pytest.mark.skipif(DEVICE.type == "cuda", reason="a real GPU runs the barrier itself")
@pytest.mark.parametrize("variant", COOP_VARIANTS)
def test_cooperative_barrier_with_programs_running_at_once(variant, monkeypatch):
    """The one-launch mode with its grid barrier, every program a thread: 3 slices × 2
    row tiles meet after each of T steps (forward) and T + 1 iterations (backward),
    through the real counters, targets and double-buffered exchange."""
    monkeypatch.setenv("RNNLAB_GPU_PATH", "cooperative")
    monkeypatch.setattr(X, "grid_sync_enabled", lambda device: True)
    monkeypatch.setattr(_tuning, "COOP_MAX_ROWS", 16)
    H = 40 if variant.startswith("rnn") else 12  # 3 slices (BH 16 or 4)
    p, lens = _problem(variant, T=4, B=19, I=3, H=H, seed=23, lengths=True)
    interval = sys.getswitchinterval()
    # long time slices: a program can finish a whole step before another reads the
    # exchange, so a wrong buffer half or barrier target shows as a wrong result
    sys.setswitchinterval(5e-3)
    try:
        with _programs_as_threads() as launches:
            _compare(variant, p, lens, True, torch.float32, 1e-5, 1e-4)
    finally:
        sys.setswitchinterval(interval)
    assert launches and all(n == 6 for n in launches), launches  # 3 slices × 2 row tiles
    assert not X._disabled, "a barrier timed out"


# --------------------------------------------------------------------------- min cells


@pytest.fixture
def min_launches(monkeypatch):
    """Counts the launches of the min cells' two Triton kernels."""
    counts = {"_states": 0, "_adjoints": 0}
    for name in counts:
        kernel = getattr(gpu_min, name)

        class Counted:
            def __getitem__(self, grid, _kernel=kernel, _name=name):
                counts[_name] += 1
                return _kernel[grid]

        monkeypatch.setattr(gpu_min, name, Counted())
    return counts


def test_min_families_are_the_triton_scan_kernels():
    assert isinstance(gpu.KERNELS.mingru, gpu_min.GpuMin)
    assert isinstance(gpu.KERNELS.minlstm, gpu_min.GpuMin)


def _min_run(family, args, lengths, reverse, parallel, dtype, backend):
    """Outputs and every gradient (x, h0, w_ih, b_ih, the probe's) of one op call."""
    leaves = [a.to(DEVICE, dtype).requires_grad_() for a in args]
    T, B = args[0].shape[:2]
    probe = torch.zeros(T, B, args[1].shape[-1], dtype=dtype, device=DEVICE,
                        requires_grad=True)
    g = torch.Generator().manual_seed(1)
    dy = torch.randn(T, B, args[1].shape[-1], generator=g, dtype=torch.float64)
    dh = torch.randn(B, args[1].shape[-1], generator=g, dtype=torch.float64)
    with backends.use_backend(backend):
        y, h_n, _ = getattr(ops_min, family)(*leaves, lengths, probe, reverse, parallel)
        ((y * dy.to(DEVICE, dtype)).sum() + (h_n * dh.to(DEVICE, dtype)).sum()).backward()
    return [t.detach().cpu().double() for t in (y, h_n, *(a.grad for a in leaves), probe.grad)]


@pytest.mark.parametrize("parallel", [True, False], ids=["scan", "loop"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("family", ["mingru", "minlstm"])
def test_min_kernels_over_chunks_and_unit_blocks_match_float64(
    family, reverse, parallel, min_launches, monkeypatch
):
    """T = 2·BLOCK_T + 5: two whole chunks of steps and a partial one; H = 70: two blocks
    of units, the second padded; a sample of length 0 (its state passes through).

    In Triton's interpreter the chunk is lowered to 4 steps (the interpreter's time grows
    with T, the kernel's logic does not change); on a GPU it is the dispatcher's own."""
    if DEVICE.type == "cpu":
        monkeypatch.setattr(gpu_min, "BLOCK_T", 4)
    G = 2 if family == "mingru" else 3
    T, B, I, H = 2 * gpu_min.BLOCK_T + 5, 4, 3, 70
    g = torch.Generator().manual_seed(5)
    args = [torch.randn(T, B, I, generator=g, dtype=torch.float64),
            torch.randn(B, H, generator=g, dtype=torch.float64),
            1.5 * torch.randn(G * H, I, generator=g, dtype=torch.float64),
            torch.randn(G * H, generator=g, dtype=torch.float64)]
    lengths = torch.tensor([T, T // 2 + 1, 1, 0])
    got = _min_run(family, args, lengths, reverse, parallel, torch.float32, "gpu")
    want = _min_run(family, args, lengths, reverse, parallel, torch.float64, "portable")
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        assert_rel_close(a, b, OUT_TOL[torch.float32] if k < 2 else GRAD_TOL[torch.float32],
                         f"{family} result {k}")
    assert min_launches == {"_states": 1, "_adjoints": 1}


@pytest.mark.parametrize("family", ["mingru", "minlstm"])
def test_min_bf16_matches_float64(family, min_launches):
    G = 2 if family == "mingru" else 3
    T, B, I, H = 21, 3, 4, 8
    g = torch.Generator().manual_seed(9)
    args = [t.bfloat16().double() for t in (  # the oracle sees the same rounded inputs
        torch.randn(T, B, I, generator=g), torch.randn(B, H, generator=g),
        torch.randn(G * H, I, generator=g), torch.randn(G * H, generator=g))]
    got = _min_run(family, args, torch.tensor([21, 9, 14]), True, True, torch.bfloat16, "gpu")
    want = _min_run(family, args, torch.tensor([21, 9, 14]), True, True, torch.float64,
                    "portable")
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        assert_rel_close(a, b, BF16_OUT_TOL if k < 2 else BF16_GRAD_TOL, f"{family} result {k}")
    assert min_launches["_states"] == 1 and min_launches["_adjoints"] == 1


@pytest.mark.parametrize("family", ["MinGRU", "MinLSTM"])
def test_min_layers_stacked_bidirectional_packed_on_the_gpu_backend(family, min_launches):
    """rnnlab.nn's min layers (2 layers, both directions, packed input) on the gpu
    backend, float32, against the same layer in float64 on the portable backend."""
    torch.manual_seed(0)
    layer = getattr(rnn_nn, family)(5, 12, num_layers=2, bidirectional=True,
                                    dtype=torch.float64)
    x = torch.randn(19, 3, 5, dtype=torch.float64)
    lengths = torch.tensor([19, 7, 12])
    results = {}
    for backend, dtype in (("gpu", torch.float32), ("portable", torch.float64)):
        model = copy.deepcopy(layer).to(DEVICE, dtype)
        inp = x.to(DEVICE, dtype).requires_grad_()
        with backends.use_backend(backend):
            packed = torch.nn.utils.rnn.pack_padded_sequence(inp, lengths, enforce_sorted=False)
            out, h_n = model(packed)
            (out.data.pow(2).sum() + h_n.sum()).backward()
        results[backend] = [out.data, h_n, inp.grad, *(p.grad for p in model.parameters())]
    for a, b in zip(results["gpu"], results["portable"], strict=True):
        assert_rel_close(a.detach().cpu().double(), b.detach().cpu(), GRAD_TOL[torch.float32])
    assert min_launches["_states"] == 4 and min_launches["_adjoints"] == 4

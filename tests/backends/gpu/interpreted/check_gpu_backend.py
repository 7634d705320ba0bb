"""Checks of the gpu backend that the shared conformance suite does not make: bf16,
both execution paths on the same problem, sizes that span several programs and tiles,
and the backend's selection rules.

Run by ../test_interpreter.py in a subprocess with TRITON_INTERPRET=1 (the kernels go
through Triton's CPU interpreter); on a CUDA machine, RNNLAB_GPU_TEST_DEVICE=cuda runs
the same checks on the GPU.
"""

from __future__ import annotations

import os

import pytest
import torch

import rnnlab
from helpers import assert_rel_close
from rnnlab import backends, ops

DEVICE = torch.device(os.environ.get("RNNLAB_GPU_TEST_DEVICE", "cpu"))
VARIANTS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "gru_reset_before"]
# bf16 inputs, fp32 state and accumulation: errors of a few bf16 ulps (2^-8) of the largest
# value, growing mildly with T through the recurrence.
BF16_OUT_TOL, BF16_GRAD_TOL = 3e-2, 6e-2


def _problem(variant: str, T: int, B: int, I: int, H: int, seed: int, lengths: bool):
    """Random float64 parameters and inputs (None where the variant has none), lengths."""
    family = variant.split("_")[0]
    G = {"rnn": 1, "lstm": 4, "gru": 3}[family] * H
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
        if family == "lstm":
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
    "tiled": {"RNNLAB_GPU_PATH": "tiled"},
    **({"graphs": {"RNNLAB_GPU_PATH": "tiled", "RNNLAB_GPU_GRAPHS": "1"}}
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
    """H = 70 > TILE_H: the tiled path (automatic at this size for LSTM/GRU) over 2 tiles."""
    monkeypatch.setenv("RNNLAB_GPU_PATH", "auto")
    p, lens = _problem(variant, T=3, B=2, I=3, H=70, seed=7, lengths=False)
    _compare(variant, p, lens, False, torch.float32, 1e-5, 1e-4)


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


def test_unknown_path_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RNNLAB_GPU_PATH", "fastest")
    p, lens = _problem("rnn_tanh", T=2, B=1, I=2, H=3, seed=0, lengths=False)
    with pytest.raises(ValueError, match="RNNLAB_GPU_PATH='fastest'"):
        _run("rnn_tanh", p, lens, False, torch.float32, "gpu")

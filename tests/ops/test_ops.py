"""The custom ops themselves: torch.library.opcheck, gradcheck in float64, the gradient
probe, torch.compile(fullgraph=True), and backend selection (oracle 5)."""

from __future__ import annotations

import pytest
import torch

import rnnlab
import rnnlab.nn as rnn
from rnnlab import ops
from rnnlab.backends import ENV_VAR, select

T, B, I, H, P = 5, 3, 4, 6, 3


def _args(family, *, bias=True, lengths=False, probe=False, reverse=False, proj=False,
          variant=False, dtype=torch.float64, seed=0):
    """Positional arguments of ``ops.<family>`` for small random inputs."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (torch.randn(shape, generator=g, dtype=dtype) * 0.5).requires_grad_(True)

    G = {"rnn": 1, "lstm": 4, "gru": 3}[family] * H
    out = P if proj else H
    x, h0 = r(T, B, I), r(B, out)
    w_ih, w_hh = r(G, I), r(G, out)
    b_ih, b_hh = (r(G), r(G)) if bias else (None, None)
    lens = torch.tensor([T, 2, 4][:B]) if lengths else None
    h_probe = r(T, B, out) if probe else None
    if family == "lstm":
        w_hr = r(P, H) if proj else None
        return (x, h0, r(B, H), w_ih, w_hh, b_ih, b_hh, w_hr, lens, h_probe, reverse)
    return (x, h0, w_ih, w_hh, b_ih, b_hh, lens, h_probe, reverse, variant)


CASES = [
    ("rnn", {}), ("rnn", {"variant": True, "lengths": True}), ("rnn", {"bias": False}),
    ("rnn", {"reverse": True, "lengths": True, "probe": True}),
    ("lstm", {}), ("lstm", {"proj": True}), ("lstm", {"lengths": True, "reverse": True}),
    ("lstm", {"proj": True, "probe": True, "lengths": True, "bias": False}),
    ("gru", {}), ("gru", {"variant": True}), ("gru", {"lengths": True, "probe": True}),
    ("gru", {"variant": True, "reverse": True, "lengths": True, "bias": False}),
]
OPS = {"rnn": ops.rnn, "lstm": ops.lstm, "gru": ops.gru}


def _case_id(case):
    family, kw = case
    return family + "-" + ("-".join(sorted(kw)) or "plain")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_opcheck(case):
    family, kw = case
    torch.library.opcheck(OPS[family], _args(family, dtype=torch.float32, **kw))


INFER_OPS = {"rnn": ops.rnn_infer, "lstm": ops.lstm_infer, "gru": ops.gru_infer}


@pytest.mark.parametrize("case", [c for c in CASES if "probe" not in c[1]], ids=_case_id)
def test_opcheck_inference_op(case):
    """The inference ops (no probe argument, no autograd): opcheck's schema, fake-tensor
    and compile checks, and outputs equal to the first outputs of the full op."""
    family, kw = case
    args = _args(family, dtype=torch.float32, **kw)
    probe_at = 9 if family == "lstm" else 7
    infer_args = tuple(
        a.detach() if isinstance(a, torch.Tensor) else a
        for i, a in enumerate(args) if i != probe_at
    )
    torch.library.opcheck(INFER_OPS[family], infer_args)
    got = INFER_OPS[family](*infer_args)
    want = OPS[family](*args)[: len(got)]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_opcheck_backward_op(case):
    family, kw = case
    args = _args(family, dtype=torch.float32, **kw)
    outputs = OPS[family](*args)
    y, h_n = outputs[0], outputs[1]
    need_dh = kw.get("probe", False)
    lengths, reverse = (args[8], args[10]) if family == "lstm" else (args[6], args[8])
    d = [o.detach() for o in outputs]
    x, h0 = args[0].detach(), args[1].detach()
    if family == "lstm":
        c0, w_ih, w_hh, w_hr = (
            a.detach() if a is not None else None for a in (*args[2:5], args[7])
        )
        bw_args = (torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(d[2]), x, h0, c0,
                   w_ih, w_hh, w_hr, d[0], d[3], d[4], lengths, reverse, need_dh)
        op = ops.lstm_backward
    else:
        w_ih, w_hh = args[2].detach(), args[3].detach()
        variant = args[9]
        # what backward reads besides y: GRU its gates, the RNN the probe added to y
        probe = args[7].detach() if args[7] is not None else None
        read = d[2] if family == "gru" else probe
        bw_args = (torch.randn_like(y), torch.randn_like(h_n), x, h0, w_ih, w_hh, d[0], read,
                   lengths, reverse, variant, need_dh)
        op = ops.rnn_backward if family == "rnn" else ops.gru_backward
    # dx is empty when x needs no gradient: one case of each family (its reversed one)
    torch.library.opcheck(op, (*bw_args, not kw.get("reverse", False)))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_gradcheck_float64(case):
    family, kw = case
    args = _args(family, **kw)
    n_outputs = 3 if family == "lstm" else 2  # the saved activations are not differentiable

    def f(*a):
        return OPS[family](*a)[:n_outputs]

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_saved_activations_are_not_differentiable():
    y, h, c, gates, cells = ops.lstm(*_args("lstm"))
    assert y.requires_grad and h.requires_grad and c.requires_grad
    assert not gates.requires_grad and not cells.requires_grad


def test_every_parameter_gets_a_contiguous_gradient_of_its_own():
    """What DDP needs: no None, contiguous, and the two biases never share storage."""
    layer = rnn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    out, _ = layer(torch.randn(4, 2, 3))
    out[0].sum().backward()  # the loss ignores most steps: gradients are zeros, not None
    ptrs = set()
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert p.grad.is_contiguous(), name
        assert p.grad.data_ptr() not in ptrs, f"{name} shares its gradient's storage"
        ptrs.add(p.grad.data_ptr())


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru"])
def test_torch_compile_fullgraph(family):
    cls = {"rnn": rnn.RNN, "lstm": rnn.LSTM, "gru": rnn.GRU}[family]
    torch.manual_seed(0)
    layer = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(2, 5, 3, requires_grad=True)
    lengths = torch.tensor([5, 3])

    def run(inp):
        out, _ = layer(inp, lengths=lengths)
        return out.square().sum()

    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    eager_loss = run(x)
    (eager_grad,) = torch.autograd.grad(eager_loss, x)
    compiled_loss = compiled(x)
    (compiled_grad,) = torch.autograd.grad(compiled_loss, x)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ backend selection


def test_use_backend_and_environment(monkeypatch):
    x = torch.randn(2, 2)
    with rnnlab.use_backend("portable"):
        assert select(x.device, x.dtype).name == "portable"
    monkeypatch.setenv(ENV_VAR, "portable")
    assert select(x.device, x.dtype).name == "portable"
    assert "portable" in rnnlab.available_backends()


def test_unknown_backend_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown rnnlab backend 'nope'.*expected one of"):
        with rnnlab.use_backend("nope"):
            pass
    monkeypatch.setenv(ENV_VAR, "no-such-backend")
    layer = rnn.GRU(2, 3)
    with pytest.raises(ValueError, match=f"no-such-backend.*{ENV_VAR}"):
        layer(torch.randn(4, 1, 2))


def test_backend_that_cannot_run_the_tensors_is_an_error_not_a_fallback():
    with rnnlab.use_backend("portable"), pytest.raises(RuntimeError, match="cannot run"):
        select(torch.device("cpu"), torch.int64)



class _Watching:
    """Forwards a family's entry points to ``inner``, recording for each backward call
    its ``need_dx`` (the last argument) and whether the dx it returned is empty."""

    def __init__(self, inner, seen: list) -> None:
        self._inner, self._seen = inner, seen

    def __getattr__(self, entry: str):
        method = getattr(self._inner, entry)
        if entry != "backward":
            return method

        def watched(*args):
            grads = method(*args)
            self._seen.append((args[-1], grads.dx.numel() > 0))
            return grads

        return watched


@pytest.fixture(params=["portable", "cpu"])
def watched_backend(request):
    """A backend registered through the public API that wraps ``portable`` or ``cpu``
    and records every backward call (see :class:`_Watching`)."""
    import dataclasses

    from rnnlab import backends
    from rnnlab.backends.contract import BackendKernels

    with rnnlab.use_backend(request.param):
        base = backends.select(torch.device("cpu"), torch.float32)
    seen: list = []
    families = {f.name: _Watching(getattr(base, f.name), seen)
                for f in dataclasses.fields(BackendKernels) if f.name not in ("name", "stream")}
    kernels = BackendKernels("watched", stream=base.stream, **families)
    backends.register("watched", lambda: kernels, lambda device, dtype: True, "a test's spy")
    try:
        with rnnlab.use_backend("watched"):
            yield seen
    finally:
        backends.unregister("watched")


LAYERS = {
    "rnn": lambda: rnn.RNN(I, H, num_layers=2, bidirectional=True),
    "lstm_proj": lambda: rnn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P),
    "gru": lambda: rnn.GRU(I, H, num_layers=2, bidirectional=True),
    "lnlstm": lambda: rnn.LSTM(I, H, num_layers=2, bidirectional=True, layer_norm=True),
    "lngru": lambda: rnn.GRU(I, H, num_layers=2, bidirectional=True, layer_norm=True),
    "lstm_zoneout": lambda: rnn.LSTM(I, H, num_layers=2, bidirectional=True, zoneout=0.3),
    "gru_recurrent_dropout": lambda: rnn.GRU(I, H, num_layers=2, bidirectional=True,
                                             recurrent_dropout=0.3),
    "mingru": lambda: rnn.MinGRU(I, H, num_layers=2, bidirectional=True),
    "minlstm": lambda: rnn.MinLSTM(I, H, num_layers=2, bidirectional=True),
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_dx_is_computed_only_when_x_needs_a_gradient(layer, watched_backend):
    """The first layer's backward skips dx when the input needs no gradient (the second
    layer's input needs one); every weight's gradient is bitwise the one computed with
    dx."""
    grads, calls = [], []
    for x_needs_grad in (True, False):
        torch.manual_seed(0)
        model = LAYERS[layer]()
        x = torch.randn(T, B, I).requires_grad_(x_needs_grad)
        watched_backend.clear()
        out, _ = model(x, lengths=torch.tensor([T, 2, 4]))
        out.pow(2).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
        calls.append(list(watched_backend))
    assert calls[0] == [(True, True)] * 4
    # layer 1's two directions (their input needs a gradient), then layer 0's
    assert calls[1] == [(True, True)] * 2 + [(False, False)] * 2
    for name, with_dx in grads[0].items():
        assert torch.equal(with_dx, grads[1][name]), name

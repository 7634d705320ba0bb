"""rnnlab's custom ops: one per cell family, each with a hand-derived backward.

Each op runs **one direction of one layer over the whole sequence** (time-major) and
is a ``torch.library.custom_op``: opaque to ``torch.compile`` (a fake implementation
gives its shapes), differentiable through ``register_autograd`` whose backward is a
second custom op (the BPTT of the cell), and dispatched at run time to a backend
(:mod:`rnnlab.backends`) by device and dtype.

Besides the output sequence and the final state, each forward op returns the
activations it saves for backward — the gates — so that recording them is free.
Those outputs are not differentiable.

The optional ``h_probe`` input (T, B, P) is added to h_t after every valid step. Fed
with zeros it changes nothing, and its gradient is the *total* ∂L/∂h_t of every step
(through the output and through the recurrence): the vanishing/exploding-gradient
picture, obtained from the same backward pass.

**Double backward.** The hand-derived backward ops are first-order only: their loops
are not themselves differentiable. When a backward pass is recorded
(``create_graph=True``: gradient penalties, Hessian-vector products,
``torch.autograd.gradgradcheck``), the autograd formulas below do not call them: they
recompute the op's forward from its saved inputs with out-of-place torch operations
(:mod:`rnnlab.backends.differentiable`) and return
``torch.autograd.grad(..., create_graph=True)`` of that recomputation, so the
second-order graph is torch's own and exact to any order. The recomputation runs on
fresh views of the inputs, so it differentiates this op call alone (an input that
depends on the same weights, as the state of a cell in a loop does, is not followed
back). A hand-derived second-order BPTT for three families, every variant and every
backend would be a large body of new math to hold exact; the recomputation costs one
more differentiable forward, and only when a higher-order graph is asked for. Without
``create_graph`` (grad mode is off inside backward, also while ``torch.compile`` traces
it) the backward ops run exactly as before.

The ops trust their arguments (shapes, lengths in [1, T]); the modules in
:mod:`rnnlab.nn` validate user input before calling them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab import backends
from rnnlab.backends import differentiable
from rnnlab.backends.contract import (
    BackendKernels,
    GRUSaved,
    GRUWeights,
    LSTMSaved,
    LSTMState,
    LSTMWeights,
    RNNSaved,
    RNNWeights,
    Sequence,
    Streamer,
    StreamSpec,
)

__all__ = ["gru", "gru_infer", "lstm", "lstm_infer", "open_stream", "rnn", "rnn_infer"]


def _backend(x: Tensor) -> BackendKernels:
    return backends.select(x.device, x.dtype)


def _if_wanted(grad: Tensor, wanted: bool) -> Tensor | None:
    return grad if wanted else None


def _keep_grads_unmaterialised(ctx) -> None:
    """Gradients of outputs the loss does not use reach backward as None, not as zeros:
    the saved activations (gates, cell states: (T, B, 4H) and more) are outputs marked
    non-differentiable, and materialising their zero gradients would double a training
    step's memory. :func:`_dense` turns the None of a differentiable output into zeros."""
    ctx.set_materialize_grads(False)


def _dense(grad: Tensor | None, like: Tensor) -> Tensor:
    """A contiguous gradient for an output shaped as ``like`` (zeros for None)."""
    if grad is None:
        return torch.zeros_like(like, memory_format=torch.contiguous_format)
    return grad.contiguous()


def _recomputed(ctx, outputs_of, entry, inputs: tuple, grads: tuple[Tensor, ...]) -> tuple:
    """The input gradients for a recorded backward: ``outputs_of`` (a forward of
    :mod:`rnnlab.backends.differentiable`) on the bundles that ``entry`` makes of the op's
    arguments ``inputs``, differentiated by ``differentiable.recomputed_grads``."""
    return differentiable.recomputed_grads(
        ctx.needs_input_grad, lambda *args: outputs_of(*entry(*args)), inputs, grads
    )


# --------------------------------------------------------------------------- RNN


@torch.library.custom_op("rnnlab::rnn", mutates_args=())
def rnn(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
    relu: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Elman RNN over a sequence: returns (y (T,B,H), h_n (B,H), a (T,B,H) pre-activations)."""
    args = _rnn_entry(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, reverse, relu)
    return tuple(_backend(x).rnn.forward(*args))


def _rnn_entry(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, reverse, relu):
    """The arguments of the contract's ``forward`` (its bundles) from those of :func:`rnn`."""
    return RNNWeights(w_ih, w_hh, b_ih, b_hh), Sequence(x, lengths, reverse), h0, h_probe, relu


@rnn.register_fake
def _rnn_fake(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, reverse, relu):
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[0]
    return x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(T, B, H)


@torch.library.custom_op("rnnlab::rnn_backward", mutates_args=())
def rnn_backward(
    dy: Tensor,
    dh_n: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    y: Tensor,
    a: Tensor,
    lengths: Tensor | None,
    reverse: bool,
    relu: bool,
    need_dh: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT of :func:`rnn`: returns dx, dh0, dW_ih, dW_hh, db, dh (empty unless need_dh)."""
    w, seq = RNNWeights(w_ih, w_hh, None, None), Sequence(x, lengths, reverse)
    return tuple(_backend(x).rnn.backward(w, seq, h0, RNNSaved(y, a), dy, dh_n, relu, need_dh))


@rnn_backward.register_fake
def _(dy, dh_n, x, h0, w_ih, w_hh, y, a, lengths, reverse, relu, need_dh):
    dh = torch.empty_like(y) if need_dh else y.new_empty(0)
    return (
        torch.empty_like(x),
        torch.empty_like(h0),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        w_hh.new_empty(w_hh.shape[0]),
        dh,
    )


def _rnn_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, reverse, relu = inputs
    y, _, a = output
    ctx.mark_non_differentiable(a)
    _keep_grads_unmaterialised(ctx)
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, y, a)
    ctx.flags = (reverse, relu)


def _rnn_grad(ctx, dy, dh_n, _da):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, y, a = ctx.saved_tensors
    reverse, relu = ctx.flags
    dy, dh_n = _dense(dy, y), _dense(dh_n, h0)
    if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
        inputs = (x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, reverse, relu)
        return _recomputed(ctx, differentiable.rnn_outputs, _rnn_entry, inputs, (dy, dh_n))
    has_b_ih, has_b_hh, has_probe = b_ih is not None, b_hh is not None, h_probe is not None
    dx, dh0, dw_ih, dw_hh, db, dh = rnn_backward(
        dy, dh_n, x, h0, w_ih, w_hh, y, a, lengths, reverse, relu,
        has_probe,
    )
    return (
        dx,
        dh0,
        dw_ih,
        dw_hh,
        _if_wanted(db, has_b_ih),
        _if_wanted(db.clone(), has_b_hh),  # a separate tensor: .grad must not alias
        None,
        _if_wanted(dh, has_probe),
        None,
        None,
    )


rnn.register_autograd(_rnn_grad, setup_context=_rnn_setup)


# --------------------------------------------------------------------------- LSTM


@torch.library.custom_op("rnnlab::lstm", mutates_args=())
def lstm(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """LSTM over a sequence: returns y (T,B,P), h_n (B,P), c_n (B,H), gates (T,B,4H)
    activated in the order i, f, g, o, and c (T,B,H) the cell state of every step."""
    args = _lstm_entry(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, h_probe, reverse)
    return tuple(_backend(x).lstm.forward(*args))


def _lstm_entry(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, h_probe, reverse):
    """The arguments of the contract's ``forward`` (its bundles) from those of :func:`lstm`."""
    w, seq = LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr), Sequence(x, lengths, reverse)
    return w, seq, LSTMState(h0, c0), h_probe


@lstm.register_fake
def _lstm_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, h_probe, reverse):
    T, B = x.shape[0], x.shape[1]
    H, P = c0.shape[-1], h0.shape[-1]
    return (
        x.new_empty(T, B, P),
        x.new_empty(B, P),
        x.new_empty(B, H),
        x.new_empty(T, B, 4 * H),
        x.new_empty(T, B, H),
    )


@torch.library.custom_op("rnnlab::lstm_backward", mutates_args=())
def lstm_backward(
    dy: Tensor,
    dh_n: Tensor,
    dc_n: Tensor,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    y: Tensor,
    gates: Tensor,
    c: Tensor,
    lengths: Tensor | None,
    reverse: bool,
    need_dh: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT of :func:`lstm`: dx, dh0, dc0, dW_ih, dW_hh, db, dW_hr (empty without
    projection), dh (empty unless need_dh)."""
    w, seq = LSTMWeights(w_ih, w_hh, None, None, w_hr), Sequence(x, lengths, reverse)
    saved, d_state = LSTMSaved(y, gates, c), LSTMState(dh_n, dc_n)
    return tuple(
        _backend(x).lstm.backward(w, seq, LSTMState(h0, c0), saved, dy, d_state, need_dh)
    )


@lstm_backward.register_fake
def _(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, w_hr, y, gates, c, lengths, reverse, need_dh):
    return (
        torch.empty_like(x),
        torch.empty_like(h0),
        torch.empty_like(c0),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        w_hh.new_empty(w_hh.shape[0]),
        torch.empty_like(w_hr) if w_hr is not None else y.new_empty(0),
        torch.empty_like(y) if need_dh else y.new_empty(0),
    )


def _lstm_setup(ctx, inputs, output):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, h_probe, reverse = inputs
    y, _, _, gates, c = output
    ctx.mark_non_differentiable(gates, c)
    _keep_grads_unmaterialised(ctx)
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, h_probe, y, gates, c)
    ctx.reverse = reverse


def _lstm_grad(ctx, dy, dh_n, dc_n, _dgates, _dc):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, h_probe, y, gates, c = ctx.saved_tensors
    reverse = ctx.reverse
    dy, dh_n, dc_n = _dense(dy, y), _dense(dh_n, h0), _dense(dc_n, c0)
    if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
        inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, h_probe, reverse)
        return _recomputed(ctx, differentiable.lstm_outputs, _lstm_entry, inputs, (dy, dh_n, dc_n))
    has_b_ih, has_b_hh, has_probe = b_ih is not None, b_hh is not None, h_probe is not None
    dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, dh = lstm_backward(
        dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, w_hr,
        y, gates, c, lengths, reverse, has_probe,
    )
    return (
        dx,
        dh0,
        dc0,
        dw_ih,
        dw_hh,
        _if_wanted(db, has_b_ih),
        _if_wanted(db.clone(), has_b_hh),  # a separate tensor: .grad must not alias
        _if_wanted(dw_hr, w_hr is not None),
        None,
        _if_wanted(dh, has_probe),
        None,
    )


lstm.register_autograd(_lstm_grad, setup_context=_lstm_setup)


# --------------------------------------------------------------------------- GRU


@torch.library.custom_op("rnnlab::gru", mutates_args=())
def gru(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    h_probe: Tensor | None,
    reverse: bool,
    reset_after: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """GRU over a sequence: returns y (T,B,H), h_n (B,H) and gates (T,B,4H) = r, z, n and
    the candidate's recurrent term hn."""
    args = _gru_entry(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, reverse, reset_after)
    return tuple(_backend(x).gru.forward(*args))


def _gru_entry(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, reverse, reset_after):
    """The arguments of the contract's ``forward`` (its bundles) from those of :func:`gru`."""
    w, seq = GRUWeights(w_ih, w_hh, b_ih, b_hh), Sequence(x, lengths, reverse)
    return w, seq, h0, h_probe, reset_after


@gru.register_fake
def _gru_fake(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, reverse, reset_after):
    T, B, H = x.shape[0], x.shape[1], h0.shape[-1]
    return x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(T, B, 4 * H)


@torch.library.custom_op("rnnlab::gru_backward", mutates_args=())
def gru_backward(
    dy: Tensor,
    dh_n: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    y: Tensor,
    gates: Tensor,
    lengths: Tensor | None,
    reverse: bool,
    reset_after: bool,
    need_dh: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT of :func:`gru`: dx, dh0, dW_ih, dW_hh, db_ih, db_hh, dh (empty unless need_dh)."""
    w, seq = GRUWeights(w_ih, w_hh, None, None), Sequence(x, lengths, reverse)
    saved = GRUSaved(y, gates)
    return tuple(_backend(x).gru.backward(w, seq, h0, saved, dy, dh_n, reset_after, need_dh))


@gru_backward.register_fake
def _(dy, dh_n, x, h0, w_ih, w_hh, y, gates, lengths, reverse, reset_after, need_dh):
    G = w_hh.shape[0]
    return (
        torch.empty_like(x),
        torch.empty_like(h0),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        w_hh.new_empty(G),
        w_hh.new_empty(G),
        torch.empty_like(y) if need_dh else y.new_empty(0),
    )


def _gru_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, reverse, reset_after = inputs
    y, _, gates = output
    ctx.mark_non_differentiable(gates)
    _keep_grads_unmaterialised(ctx)
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, y, gates)
    ctx.flags = (reverse, reset_after)


def _gru_grad(ctx, dy, dh_n, _dgates):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, y, gates = ctx.saved_tensors
    reverse, reset_after = ctx.flags
    dy, dh_n = _dense(dy, y), _dense(dh_n, h0)
    if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
        inputs = (x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, reverse, reset_after)
        return _recomputed(ctx, differentiable.gru_outputs, _gru_entry, inputs, (dy, dh_n))
    has_b_ih, has_b_hh, has_probe = b_ih is not None, b_hh is not None, h_probe is not None
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dh = gru_backward(
        dy, dh_n, x, h0, w_ih, w_hh, y, gates, lengths, reverse,
        reset_after, has_probe,
    )
    return (
        dx,
        dh0,
        dw_ih,
        dw_hh,
        _if_wanted(db_ih, has_b_ih),
        _if_wanted(db_hh, has_b_hh),
        None,
        _if_wanted(dh, has_probe),
        None,
        None,
    )


gru.register_autograd(_gru_grad, setup_context=_gru_setup)


# --------------------------------------------------------------------------- inference
#
# The same recurrences without autograd and without saved activations, for calls that
# need neither a gradient nor a recording (``torch.no_grad()``, frozen weights): the
# outputs and final states only, so no (T, B, gates) tensor is ever held. Each backend
# family's ``infer`` serves them (a family without a dedicated inference path declares
# so in its type: :class:`rnnlab.backends.contract.RNNInferByForward` and its siblings).


@torch.library.custom_op("rnnlab::rnn_infer", mutates_args=())
def rnn_infer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    reverse: bool,
    relu: bool,
) -> tuple[Tensor, Tensor]:
    """:func:`rnn` without saved activations: returns (y (T,B,H), h_n (B,H))."""
    w, seq = RNNWeights(w_ih, w_hh, b_ih, b_hh), Sequence(x, lengths, reverse)
    return tuple(_backend(x).rnn.infer(w, seq, h0, relu))


@rnn_infer.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, relu):
    return _rnn_fake(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, None, reverse, relu)[:2]


@torch.library.custom_op("rnnlab::lstm_infer", mutates_args=())
def lstm_infer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`lstm` without saved activations: returns (y (T,B,P), h_n (B,P), c_n (B,H))."""
    w, seq = LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr), Sequence(x, lengths, reverse)
    return tuple(_backend(x).lstm.infer(w, seq, LSTMState(h0, c0)))


@lstm_infer.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse):
    return _lstm_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, None, reverse)[:3]


@torch.library.custom_op("rnnlab::gru_infer", mutates_args=())
def gru_infer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    reverse: bool,
    reset_after: bool,
) -> tuple[Tensor, Tensor]:
    """:func:`gru` without saved activations: returns (y (T,B,H), h_n (B,H))."""
    w, seq = GRUWeights(w_ih, w_hh, b_ih, b_hh), Sequence(x, lengths, reverse)
    return tuple(_backend(x).gru.infer(w, seq, h0, reset_after))


@gru_infer.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after):
    return _gru_fake(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, None, reverse, reset_after)[:2]


# --------------------------------------------------------------------------- streaming


def open_stream(spec: StreamSpec, h: Tensor, c: Tensor) -> Streamer:
    """A streamer for the stack ``spec`` from state h (L, P), c (L, H), on the backend
    that the registry picks for the state's device and dtype (so :func:`use_backend`
    applies, at the time the stream is opened). Not a custom op: a stream is stateful
    and outside autograd; its steps run on the backend's streaming kernel directly."""
    return backends.select(h.device, h.dtype).stream.open(spec, h, c)

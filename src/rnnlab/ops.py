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

**Packed rows.** ``rnnlab::rnn``, ``rnnlab::lstm`` and ``rnnlab::gru`` (and their
backward and inference ops) also take x packed as ``PackedSequence.data`` is: (N, I),
samples longest first, ``lengths`` given (the layout of
:mod:`rnnlab.backends.contract`); every per-step input and output is then (N, ·) too.
The layers run packed input this way, so no padding step is stored.

The ops trust their arguments (shapes, lengths in [1, T], non-increasing when packed);
the modules in :mod:`rnnlab.nn` validate user input before calling them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rnnlab import backends
from rnnlab.backends import differentiable
from rnnlab.backends._rows import Padded, padded_call
from rnnlab.backends.contract import (
    BackendKernels,
    GRUForward,
    GRUGrads,
    GRUSaved,
    GRUWeights,
    LSTMForward,
    LSTMGrads,
    LSTMSaved,
    LSTMState,
    LSTMWeights,
    PackedRows,
    RNNForward,
    RNNGrads,
    RNNSaved,
    RNNWeights,
    Sequence,
    Streamer,
    StreamSpec,
)

__all__ = ["gru", "gru_infer", "lstm", "lstm_infer", "open_stream", "rnn", "rnn_infer"]


def _backend(x: Tensor) -> BackendKernels:
    return backends.select(x.device, x.dtype)


def _for_layout(kernels: Any, x: Tensor) -> Any:
    """A plain family's kernels for x's layout: a packed x (N, I) reaches kernels that do
    not declare :class:`PackedRows` through their padded form."""
    if x.dim() == 2 and not isinstance(kernels, PackedRows):
        return Padded(kernels)
    return kernels


def _steps(named: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    """The leading shape of a per-step tensor — (T, B), or (N,) for packed rows — and B."""
    x = named["x"]
    if x.dim() == 2:
        return (x.shape[0],), named["lengths"].shape[0]
    return tuple(x.shape[:2]), x.shape[1]


def _keep_grads_unmaterialised(ctx) -> None:
    """Gradients of outputs the loss does not use reach backward as None, not as zeros:
    the saved activations (gates, cell states: (T, B, 4H) and more) are outputs marked
    non-differentiable, and materialising their zero gradients would double a training
    step's memory. :func:`_dense` turns the None of a differentiable output into zeros."""
    ctx.set_materialize_grads(False)


def _dense(grad: Tensor | None, like: Tensor, contiguous: bool = True) -> Tensor:
    """A gradient for an output shaped as ``like`` (zeros for None), contiguous unless
    ``contiguous`` is false."""
    if grad is None:
        return torch.zeros_like(like, memory_format=torch.contiguous_format)
    return grad.contiguous() if contiguous else grad


def _recomputation(outputs_of: Callable, entry: Callable) -> Callable:
    """The differentiable outputs of an op as a function of its flat arguments:
    ``outputs_of`` (a forward of :mod:`rnnlab.backends.differentiable`) on the bundles
    that ``entry`` makes of them (a packed sequence through its padded form)."""

    def outputs(*args):
        w, seq, *rest = entry(*args)
        if not seq.packed:
            return outputs_of(w, seq, *rest)
        return padded_call(lambda s, *a: outputs_of(w, s, *a), seq, *rest,
                           per_step=(_PROBE_AT - 2,))

    return outputs


# --------------------------------------------------------------------------- defining a family

_PROBE_AT = 3  # h_probe's place among a forward entry's bundles; the contract's infer omits it
_SHAPED_AS = {"y": "y", "h_n": "h0", "c_n": "c0"}  # a differentiable output: what its
# gradient is shaped as (zeros stand for the gradient of an output the loss did not use)
_SHARED_GRAD = {"b_ih": "db", "b_hh": "db", "h_probe": "dh"}  # the biases enter as a sum
# (one db for both where the family has no db_ih, db_hh); the probe's gradient is ∂L/∂h_t
REVERSE = "_reverse"  # the suffix of the reverse direction's names in an op that runs
# both (rnnlab.ops_bidirectional); the rules above apply to it as to the base name


def _split(name: str) -> tuple[str, str]:
    """(base name, direction suffix: "" or ``REVERSE``)."""
    if name.endswith(REVERSE):
        return name[: -len(REVERSE)], REVERSE
    return name, ""


def _op(name: str, entry: Callable, results: int, call: Callable, doc: str, drop: str = ""):
    """The custom op ``rnnlab::<name>``: its schema is ``entry``'s flat signature less the
    parameter ``drop``, returning ``results`` tensors; it runs ``call(*arguments)``."""
    signature = inspect.signature(entry)

    def run(*args):
        return tuple(call(*args))

    run.__signature__ = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name != drop],
        return_annotation=tuple[(Tensor,) * results],
    )
    run.__name__, run.__qualname__, run.__doc__ = name, name, doc
    return torch.library.custom_op(f"rnnlab::{name}", run, mutates_args=())


def _define_family(
    name: str,
    kernels: Callable[[Tensor], Any],
    entry: Callable,
    backward_entry: Callable,
    *,
    outputs: type[NamedTuple],
    grads: type[NamedTuple],
    shapes: Callable[[dict[str, Any]], tuple[tuple, ...]],
    outputs_of: Callable | None,
    infer: bool = True,
    recompute: Callable | None = None,
    contiguous_grads: bool = True,
) -> tuple:
    """Register a cell family's custom ops and return them: ``rnnlab::<name>``,
    ``rnnlab::<name>_backward`` and, with ``infer``, ``rnnlab::<name>_infer``.

    What is the family's own: ``entry`` and ``backward_entry``, whose flat, annotated
    signatures are the ops' schemas (``torch.library`` needs flat tensors, and the ONNX
    translations read them), pack those arguments into the contract's bundles;
    ``kernels(x)`` is the family's object of :mod:`rnnlab.backends.contract` for x's
    device and dtype, whose ``forward``, ``backward`` and ``infer`` take the bundles;
    ``outputs`` and ``grads`` (the family's ``<F>Forward`` and ``<F>Grads``) name the
    results; ``shapes(named)`` gives the forward's output shapes from its named arguments
    (the fake implementation); ``outputs_of`` recomputes the differentiable outputs from
    the bundles for double backward (:mod:`rnnlab.backends.differentiable`), or
    ``recompute`` does from the op's flat arguments. The gradients of the outputs reach
    ``backward_entry`` contiguous, or as autograd gives them without
    ``contiguous_grads`` (the entry then copies what it needs, when it needs it).

    The rest follows from the names. The backward op's parameters are the forward's
    inputs, its outputs and ``d<output>``: the gradients of the differentiable outputs
    (the outputs that backward takes a ``d``-name for; the others are saved activations,
    marked non-differentiable, their gradients never materialised), ``need_dh`` (True
    when a probe was passed) and ``need_dx`` (True when x needs a gradient). Each
    gradient ``d<input>`` goes to its input, ``db`` to both biases (a copy for b_hh:
    .grad must not alias), ``dh`` to ``h_probe``; the lengths, masks, options and inputs
    that need no gradient get None. Inference is the forward less ``h_probe``, returning
    the differentiable outputs only.
    """
    names = tuple(inspect.signature(entry).parameters)
    backward_names = tuple(inspect.signature(backward_entry).parameters)
    options = tuple(
        n for n, p in inspect.signature(entry).parameters.items() if p.annotation in (bool, "bool")
    )
    tensors = tuple(n for n in names if n not in options)
    differentiable_ = tuple(o for o in outputs._fields if f"d{o}" in backward_names)
    saved = tuple(o for o in outputs._fields if o in backward_names)

    op = _op(
        name, entry, len(outputs._fields),
        lambda *args: kernels(args[0]).forward(*entry(*args)), entry.__doc__,
    )
    x_at = backward_names.index("x")
    backward_op = _op(
        f"{name}_backward", backward_entry, len(grads._fields),
        lambda *args: kernels(args[x_at]).backward(*backward_entry(*args)),
        f"BPTT of rnnlab::{name}: {', '.join(grads._fields)} (dh empty unless need_dh, "
        "dx unless need_dx).",
    )

    @op.register_fake
    def _(*args):
        return tuple(args[0].new_empty(s) for s in shapes(dict(zip(names, args, strict=True))))

    @backward_op.register_fake
    def _(*args):
        named = dict(zip(backward_names, args, strict=True))
        y = named["y"]

        def empty(grad: str) -> Tensor:
            base, suffix = _split(grad)
            if base == "dh":  # the probe's gradient: shaped as the probe (as y)
                if not named["need_dh"]:
                    return y.new_empty(0)
                like = named.get("h_probe" + suffix)
                return torch.empty_like(named["y" + suffix] if like is None else like)
            if base == "dx" and not named["need_dx"]:
                return y.new_empty(0)
            if base in ("db", "db_ih", "db_hh"):
                return y.new_empty(named["w_ih" + suffix].shape[0])
            of = named[grad[1:]]
            return y.new_empty(0) if of is None else torch.empty_like(of)

        return tuple(empty(g) for g in grads._fields)

    recomputed = recompute or _recomputation(outputs_of, entry)
    # The wiring, resolved by name once here, as positions (autograd runs it every call).
    kept = tensors + saved  # ctx.saved_tensors, in this order
    tensor_at = tuple(names.index(n) for n in tensors)
    option_at = tuple(names.index(n) for n in options)
    constant_at = tuple(i for i, o in enumerate(outputs._fields) if o not in differentiable_)
    saved_at = tuple(outputs._fields.index(o) for o in saved)
    grad_at = tuple(outputs._fields.index(o) for o in differentiable_)
    like_at = tuple(kept.index(_SHAPED_AS[_split(o)[0]] + _split(o)[1]) for o in differentiable_)
    input_from = tuple((0, kept.index(n)) if n in kept else (1, options.index(n)) for n in names)
    probe_at = kept.index("h_probe")
    x_input = names.index("x")

    def source(n: str) -> tuple[int, int]:  # (pool, index): kept, options, grads, needs
        if n in kept:
            return 0, kept.index(n)
        if n in options:
            return 1, options.index(n)
        if n in ("need_dh", "need_dx"):
            return 3, ("need_dh", "need_dx").index(n)
        return 2, differentiable_.index(n[1:])

    backward_from = tuple(source(n) for n in backward_names)

    def gradient_of(n: str) -> tuple[int, bool, int]:  # (result index or -1, copy, kept index)
        base, suffix = _split(n)
        shared = _SHARED_GRAD.get(base)
        key = f"d{n}" if f"d{n}" in grads._fields else shared and shared + suffix
        found = grads._fields.index(key) if key in grads._fields else -1
        return found, base == "b_hh" and key == "db" + suffix, kept.index(n) if n in kept else -1

    gradients = tuple(gradient_of(n) for n in names)

    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(*(output[i] for i in constant_at))
        _keep_grads_unmaterialised(ctx)
        ctx.save_for_backward(*(inputs[i] for i in tensor_at), *(output[i] for i in saved_at))
        ctx.options = tuple(inputs[i] for i in option_at)

    def grad(ctx, *output_grads):
        held = ctx.saved_tensors
        d = tuple(_dense(output_grads[i], held[k], contiguous_grads)
                  for i, k in zip(grad_at, like_at, strict=True))
        if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
            pools = (held, ctx.options)
            inputs = tuple(pools[pool][k] for pool, k in input_from)
            return differentiable.recomputed_grads(ctx.needs_input_grad, recomputed, inputs, d)
        needs = (held[probe_at] is not None, ctx.needs_input_grad[x_input])
        pools = (held, ctx.options, d, needs)
        found = backward_op(*(pools[pool][k] for pool, k in backward_from))
        wanted = ctx.needs_input_grad  # an input that needs none gets None (x: dx is empty)
        return tuple(
            None if r < 0 or k < 0 or held[k] is None or not wanted[i]
            else found[r].clone() if copy else found[r]
            for i, (r, copy, k) in enumerate(gradients)
        )

    op.register_autograd(grad, setup_context=setup_context)
    if not infer:
        return op, backward_op

    probe = names.index("h_probe")

    def run_infer(*args):
        bundles = entry(*args[:probe], None, *args[probe:])
        return kernels(args[0]).infer(*bundles[:_PROBE_AT], *bundles[_PROBE_AT + 1 :])

    infer_op = _op(
        f"{name}_infer", entry, len(differentiable_), run_infer,
        f"rnnlab::{name} without saved activations: returns {', '.join(differentiable_)}.",
        drop="h_probe",
    )

    @infer_op.register_fake
    def _(*args):
        named = dict(zip(names, (*args[:probe], None, *args[probe:]), strict=True))
        return tuple(args[0].new_empty(s) for s in shapes(named)[: len(differentiable_)])

    return op, backward_op, infer_op


# --------------------------------------------------------------------------- RNN


def _rnn_entry(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
    b_hh: Tensor | None, lengths: Tensor | None, h_probe: Tensor | None, reverse: bool,
    relu: bool,
):
    """Elman RNN over a sequence: returns y (T,B,H), h_n (B,H) and the pre-activations a
    (T,B,H), which only recording keeps (backward reads y)."""
    return RNNWeights(w_ih, w_hh, b_ih, b_hh), Sequence(x, lengths, reverse), h0, h_probe, relu


def _rnn_backward_entry(
    dy: Tensor, dh_n: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, y: Tensor,
    h_probe: Tensor | None, lengths: Tensor | None, reverse: bool, relu: bool, need_dh: bool,
    need_dx: bool,
):
    w, seq = RNNWeights(w_ih, w_hh, None, None), Sequence(x, lengths, reverse)
    return w, seq, h0, RNNSaved(y, h_probe), dy, dh_n, relu, need_dh, need_dx


def _rnn_shapes(named: dict[str, Any]) -> tuple[tuple, ...]:
    (steps, B), H = _steps(named), named["h0"].shape[-1]
    return (*steps, H), (B, H), (*steps, H)  # y, h_n, a


rnn, rnn_backward, rnn_infer = _define_family(
    "rnn", lambda x: _for_layout(_backend(x).rnn, x), _rnn_entry, _rnn_backward_entry,
    outputs=RNNForward, grads=RNNGrads, shapes=_rnn_shapes,
    outputs_of=differentiable.rnn_outputs,
)


# --------------------------------------------------------------------------- LSTM


def _lstm_entry(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
    b_hh: Tensor | None, w_hr: Tensor | None, lengths: Tensor | None,
    h_probe: Tensor | None, reverse: bool,
):
    """LSTM over a sequence: returns y (T,B,P), h_n (B,P), c_n (B,H), gates (T,B,4H)
    activated in the order i, f, g, o, and c (T,B,H) the cell state of every step."""
    w, seq = LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr), Sequence(x, lengths, reverse)
    return w, seq, LSTMState(h0, c0), h_probe


def _lstm_backward_entry(
    dy: Tensor, dh_n: Tensor, dc_n: Tensor, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor,
    w_hh: Tensor, w_hr: Tensor | None, y: Tensor, gates: Tensor, c: Tensor,
    lengths: Tensor | None, reverse: bool, need_dh: bool,
    need_dx: bool,
):
    w, seq = LSTMWeights(w_ih, w_hh, None, None, w_hr), Sequence(x, lengths, reverse)
    saved, d_state = LSTMSaved(y, gates, c), LSTMState(dh_n, dc_n)
    return w, seq, LSTMState(h0, c0), saved, dy, d_state, need_dh, need_dx


def _lstm_shapes(named: dict[str, Any]) -> tuple[tuple, ...]:
    """y, h_n, c_n, gates, c: the LSTM's outputs (and the layer-normalised LSTM's)."""
    (steps, B), H, P = _steps(named), named["c0"].shape[-1], named["h0"].shape[-1]
    return (*steps, P), (B, P), (B, H), (*steps, 4 * H), (*steps, H)


lstm, lstm_backward, lstm_infer = _define_family(
    "lstm", lambda x: _for_layout(_backend(x).lstm, x), _lstm_entry, _lstm_backward_entry,
    outputs=LSTMForward, grads=LSTMGrads, shapes=_lstm_shapes,
    outputs_of=differentiable.lstm_outputs,
)


# --------------------------------------------------------------------------- GRU


def _gru_entry(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
    b_hh: Tensor | None, lengths: Tensor | None, h_probe: Tensor | None, reverse: bool,
    reset_after: bool,
):
    """GRU over a sequence: returns y (T,B,H), h_n (B,H) and gates (T,B,4H) = r, z, n and
    the candidate's recurrent term hn."""
    w, seq = GRUWeights(w_ih, w_hh, b_ih, b_hh), Sequence(x, lengths, reverse)
    return w, seq, h0, h_probe, reset_after


def _gru_backward_entry(
    dy: Tensor, dh_n: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, y: Tensor,
    gates: Tensor, lengths: Tensor | None, reverse: bool, reset_after: bool, need_dh: bool,
    need_dx: bool,
):
    w, seq = GRUWeights(w_ih, w_hh, None, None), Sequence(x, lengths, reverse)
    return w, seq, h0, GRUSaved(y, gates), dy, dh_n, reset_after, need_dh, need_dx


def _gru_shapes(named: dict[str, Any]) -> tuple[tuple, ...]:
    """y, h_n, gates: the GRU's outputs (and the layer-normalised and masked GRU's)."""
    (steps, B), H = _steps(named), named["h0"].shape[-1]
    return (*steps, H), (B, H), (*steps, 4 * H)


gru, gru_backward, gru_infer = _define_family(
    "gru", lambda x: _for_layout(_backend(x).gru, x), _gru_entry, _gru_backward_entry,
    outputs=GRUForward, grads=GRUGrads, shapes=_gru_shapes,
    outputs_of=differentiable.gru_outputs,
)


# --------------------------------------------------------------------------- streaming


def open_stream(spec: StreamSpec, h: Tensor, c: Tensor) -> Streamer:
    """A streamer for the stack ``spec`` from state h (L, P), c (L, H), on the backend
    that the registry picks for the state's device and dtype (so :func:`use_backend`
    applies, at the time the stream is opened). Not a custom op: a stream is stateful
    and outside autograd; its steps run on the backend's streaming kernel directly."""
    return backends.select(h.device, h.dtype).stream.open(spec, h, c)

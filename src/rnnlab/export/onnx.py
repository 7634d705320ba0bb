"""ONNX export of rnnlab's recurrent layers as ONNX's native LSTM, GRU and RNN operators
(the min cells as standard operators and a Scan).

rnnlab's custom ops (:mod:`rnnlab.ops`) each run one direction of one layer. This module
registers, for each op, an ONNX translation (an onnxscript function for the exporter's
``custom_translation_table``). For rnn, lstm and gru it emits **one** native ONNX
``LSTM`` / ``GRU`` / ``RNN`` node, never a Loop or Scan, and re-lays torch.nn's weights
in ONNX's conventions:

    family  torch.nn gate order   ONNX gate order   ONNX bias B
    LSTM    i, f, g, o            i, o, f, c        [Wb_iofc, Rb_iofc]   (1, 8H)
    GRU     r, z, n               z, r, h           [Wb_zrh, Rb_zrh]     (1, 6H)
    RNN     (one gate)            (one gate)        [Wb, Rb]             (1, 2H)

The two biases stay separate (ONNX adds them, as torch does, which matters for the GRU's
candidate). The GRU's reset placement maps exactly onto ``linear_before_reset``:
torch.nn's default (reset applied *after* the recurrent matmul, ``reset_after=True``) is
``linear_before_reset=1``; Cho et al.'s original (``reset_after=False``) is ONNX's default
``linear_before_reset=0``. Per-sample lengths become ``sequence_lens``; ONNX then runs a
reverse direction over each sample's valid span, the PackedSequence semantics of torch.

:func:`to_onnx` wraps ``torch.onnx.export(..., dynamo=True)`` with that table, dynamic
batch and time dimensions, and two clean-ups on the resulting graph: the re-laid weights
are folded into initializers, and the forward and reverse nodes of each bidirectional
layer are fused into one ``direction="bidirectional"`` node (one node per layer).

The min cells (``rnnlab::mingru``, ``rnnlab::minlstm``, :mod:`rnnlab.ops_min`) have no
native ONNX operator; their gates read x_t only, so each translates to standard operators:
one ``MatMul`` (+ ``Add``) projects every step's input, pointwise nodes give a_t and b_t of
h_t = a_t ⊙ h_{t-1} + b_t as :mod:`rnnlab.ops_min` computes them (minLSTM's
log σ(u) = min(u, 0) - log(1 + e^{-|u|})), and one ``Scan`` whose body is a ``Mul`` and an
``Add`` runs the recurrence: the loop's own sums, exact and stable at any T (a product or
log-space form would lose float32 accuracy as T grows). Per-sample lengths make a padding
step a = 1, b = 0 (the state kept) and its output 0.

The layer-normalised LSTM and GRU (``rnnlab::lnlstm``, ``rnnlab::lngru``,
:mod:`rnnlab.ops_ln`) normalise W_hh h_{t-1}, which ONNX's LSTM and GRU cannot: each
layer and direction is one ``MatMul`` and one ``LayerNormalization`` (opset 17+) for every
step's input term, and one ``Scan`` whose body is the cell's step (the recurrent
``MatMul``, ``LayerNormalization``, the gates; a padding step keeps the state).
Zoneout (the masked ops ``rnnlab::lstm_masked``, ``rnnlab::gru_masked``, which a layer
with zoneout runs in eval with k = p) likewise: one ``MatMul`` for every step's input
term and one ``Scan`` of the masked step with the shares k_t scanned (the GRU's with
``reset_after=True`` only). A Scan runs forwards; a reverse direction flips its inputs
and states in time.

Not exportable, with an error that names the feature: the LSTM projection
(``proj_size > 0``, no ONNX equivalent), zoneout in a GRU with ``reset_after=False``, the
gradient probe of :mod:`rnnlab.nn.record`, and graphs that use the ops' saved gate
activations.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import operator
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, Union

import numpy as np
import onnx_ir as ir
import onnxscript.optimizer
import torch
from onnxscript import BFLOAT16, BOOL, DOUBLE, FLOAT, FLOAT16, graph, script
from onnxscript import opset18 as op
from onnxscript.values import Opset

# Importing them defines the ops rnnlab::lnlstm, lngru, lstm_masked, gru_masked, mingru,
# minlstm.
import rnnlab.ops_ln
import rnnlab.ops_masked
import rnnlab.ops_min  # noqa: F401
from rnnlab.backends._layer_norm import EPS  # the layer-normalised cells' ε
from rnnlab.nn.modules import RNNBase

__all__ = ["ExportError", "to_onnx", "translation_table"]

_INT32 = 6  # onnx.TensorProto.INT32

# Position of each torch.nn gate block in ONNX's stacked order.
_LSTM_TO_ONNX = (0, 3, 1, 2)  # i, f, g, o -> i, o, f, c
_GRU_TO_ONNX = (1, 0, 2)  # r, z, n -> z, r, h

_RECURRENT_OPS = ("LSTM", "GRU", "RNN")
# Results of each op that an inference graph can carry; later ones are saved activations.
_REAL_OUTPUTS = {"lstm": 3, "gru": 2, "rnn": 2, "mingru": 2, "minlstm": 2, "lnlstm": 3,
                 "lngru": 2, "lstm_masked": 3, "gru_masked": 2}


class ExportError(ValueError):
    """A model uses a feature that has no exact ONNX equivalent."""


# --------------------------------------------------------------------------- translation


def _gate_rows(hidden: int, order: Sequence[int]) -> list[int]:
    """Row indices that gather torch.nn's stacked gate blocks into ONNX's order."""
    return [block * hidden + k for block in order for k in range(hidden)]


def _onnx_weights(w_ih, w_hh, b_ih, b_hh, hidden: int, order: Sequence[int]):
    """W (1, G·H, I), R (1, G·H, H) and B (1, 2·G·H) or None, in ONNX gate order."""
    rows = _gate_rows(hidden, order)
    W = op.Unsqueeze(op.Gather(w_ih, rows, axis=0), [0])
    R = op.Unsqueeze(op.Gather(w_hh, rows, axis=0), [0])
    if b_ih is None and b_hh is None:
        return W, R, None
    zeros = np.zeros(len(rows), dtype=np.float32)
    b_ih = op.Gather(b_ih, rows, axis=0) if b_ih is not None else op.CastLike(zeros, b_hh)
    b_hh = op.Gather(b_hh, rows, axis=0) if b_hh is not None else op.CastLike(zeros, b_ih)
    return W, R, op.Unsqueeze(op.Concat(b_ih, b_hh, axis=0), [0])


def _sequence_lens(lengths):
    return None if lengths is None else op.Cast(lengths, to=_INT32)


def _direction(reverse: bool) -> str:
    return "reverse" if reverse else "forward"


def _refuse_probe(h_probe, family: str) -> None:
    if h_probe is not None:
        raise ExportError(
            f"rnnlab::{family} was called with a gradient probe (h_probe), which only "
            "exists for rnnlab.nn.record's gradient-through-time; export the model "
            "outside a recording"
        )


# Each translation returns only the op's inference results (y, h_n[, c_n]), not its saved
# gate activations: ONNX's nodes do not expose them, the exporter drops the unused getitems
# of those outputs, and to_onnx refuses a graph that uses them (_check_saved_outputs_unused).


def _lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, lengths=None,
          h_probe=None, reverse=False):
    """rnnlab::lstm (T,B,I) -> one ONNX LSTM node: y (T,B,H), h_n (B,H), c_n (B,H)."""
    if w_hr is not None:
        raise ExportError(
            "LSTM with proj_size > 0 (projection h_t = W_hr·(o ⊙ tanh c_t)) cannot be "
            "exported to ONNX: the ONNX LSTM operator has no projection, and an exact "
            "decomposition would need a Loop over time steps. Export an LSTM without "
            "proj_size."
        )
    _refuse_probe(h_probe, "lstm")
    hidden = w_hh.shape[1]
    W, R, B = _onnx_weights(w_ih, w_hh, b_ih, b_hh, hidden, _LSTM_TO_ONNX)
    Y, Y_h, Y_c = op.LSTM(
        x, W, R, B, _sequence_lens(lengths), op.Unsqueeze(h0, [0]), op.Unsqueeze(c0, [0]),
        direction=_direction(reverse), hidden_size=hidden,
    )
    return op.Squeeze(Y, [1]), op.Squeeze(Y_h, [0]), op.Squeeze(Y_c, [0])


def _gru(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, h_probe=None,
         reverse=False, reset_after=True):
    """rnnlab::gru (T,B,I) -> one ONNX GRU node: y (T,B,H), h_n (B,H)."""
    _refuse_probe(h_probe, "gru")
    hidden = w_hh.shape[1]
    W, R, B = _onnx_weights(w_ih, w_hh, b_ih, b_hh, hidden, _GRU_TO_ONNX)
    Y, Y_h = op.GRU(
        x, W, R, B, _sequence_lens(lengths), op.Unsqueeze(h0, [0]),
        direction=_direction(reverse), hidden_size=hidden,
        # reset after the recurrent matmul (torch.nn, cuDNN) is ONNX's linear_before_reset=1
        linear_before_reset=1 if reset_after else 0,
    )
    return op.Squeeze(Y, [1]), op.Squeeze(Y_h, [0])


def _rnn(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, h_probe=None,
         reverse=False, relu=False):
    """rnnlab::rnn (T,B,I) -> one ONNX RNN node: y (T,B,H), h_n (B,H)."""
    _refuse_probe(h_probe, "rnn")
    hidden = w_hh.shape[1]
    W, R, B = _onnx_weights(w_ih, w_hh, b_ih, b_hh, hidden, (0,))
    Y, Y_h = op.RNN(
        x, W, R, B, _sequence_lens(lengths), op.Unsqueeze(h0, [0]),
        direction=_direction(reverse), hidden_size=hidden,
        activations=["Relu" if relu else "Tanh"],
    )
    return op.Squeeze(Y, [1]), op.Squeeze(Y_h, [0])


# --------------------------------------------------------------------------- the min cells

# The domain of the scan functions below; the exporter's optimiser inlines them, so no
# node of an exported model is left in it.
_RNNLAB = Opset("rnnlab.onnx", 1)
_Real = TypeVar("_Real", bound=Union[FLOAT, DOUBLE, FLOAT16, BFLOAT16])  # noqa: UP007


# Scan has a variable number of outputs, which only an onnxscript function (not the
# exporter's tracing of a translation) can give a node. Each runs forwards in time; the
# reverse direction flips its inputs and the states in time (_time_flipped).
@script(_RNNLAB, default_opset=op)
def _linear_recurrence(h0: _Real, a: _Real, b: _Real) -> tuple[_Real, _Real]:
    """h_t = a_t ⊙ h_{t-1} + b_t over dim 0 from h0: the states (T, B, H) and the last."""

    @graph()
    def step(h_prev, a_t, b_t):
        h_t = op.Add(op.Mul(a_t, h_prev), b_t)
        return h_t, op.Identity(h_t)

    h_n, states = op.Scan(h0, a, b, body=step, num_scan_inputs=2)
    return states, h_n


def _time_flipped(t):
    """t reversed along dim 0 (time)."""
    return op.Slice(t, [-1], [np.iinfo(np.int64).min], [0], [-1])


def _coefficients(family: str, u, real: np.dtype):
    """(a, b) of h_t = a_t ⊙ h_{t-1} + b_t from u (T, B, G·H), as :mod:`rnnlab.ops_min`."""
    if family == "mingru":
        u_z, h_tilde = op.Split(u, axis=-1, num_outputs=2)
        return op.Sigmoid(op.Neg(u_z)), op.Mul(op.Sigmoid(u_z), h_tilde)
    u_f, u_i, h_tilde = op.Split(u, axis=-1, num_outputs=3)
    d = op.Sub(_log_sigmoid(u_f, real), _log_sigmoid(u_i, real))  # f'/i' = f/i
    return op.Sigmoid(d), op.Mul(op.Sigmoid(op.Neg(d)), h_tilde)


def _log_sigmoid(u, real: np.dtype):
    """log σ(u) = min(u, 0) - log(1 + e^{-|u|}), finite for every u (onnxruntime has no
    float64 Softplus)."""
    zero, one = _constant(0, real), _constant(1, real)
    return op.Sub(op.Min(u, zero), op.Log(op.Add(op.Exp(op.Neg(op.Abs(u))), one)))


def _constant(value: float, real: np.dtype, size: int | None = None):
    """A Constant node of the layer's dtype, a scalar or ``size`` entries (a Python number
    would be typed from its neighbours, which the tracer does not always know)."""
    return op.Constant(value=ir.tensor(np.full(() if size is None else size, value, real)))


def _valid_steps(x, lengths, zero):
    """valid (T, B, 1), t < lengths[b] (all True without lengths), and x with its padding
    steps zeroed: padding is never read."""
    if lengths is None:
        one = op.Constant(value=ir.tensor(np.array([1])))
        valid = op.ConstantOfShape(op.Concat(op.Shape(x, start=0, end=2), one, axis=0),
                                   value=ir.tensor(np.array([True])))
        return valid, x
    steps = op.Range(0, op.Squeeze(op.Shape(x, start=0, end=1), [0]), 1)
    valid = op.Unsqueeze(op.Less(op.Unsqueeze(steps, [1]), op.Unsqueeze(lengths, [0])), [2])
    return valid, op.Where(valid, x, zero)


def _min_cell(family: str, x, h0, w_ih, b_ih, lengths, h_probe, reverse):
    """rnnlab::<family> (T,B,I) -> MatMul, pointwise a and b, one Scan: y (T,B,H), h_n (B,H)."""
    _refuse_probe(h_probe, family)
    shape = None if x.shape is None else ir.Shape([*x.shape[:2], h0.shape[-1]])  # (T, B, H)
    real = x.dtype.numpy()
    zero, one = _constant(0, real), _constant(1, real)
    valid, x = (None, x) if lengths is None else _valid_steps(x, lengths, zero)
    u = op.MatMul(x, op.Transpose(w_ih, perm=[1, 0]))
    if b_ih is not None:
        u = op.Add(u, b_ih)
    a, b = _coefficients(family, u, real)
    if valid is not None:  # a padding step keeps the state
        a, b = op.Where(valid, a, one), op.Where(valid, b, zero)
    if reverse:
        a, b = _time_flipped(a), _time_flipped(b)
    if shape is not None:  # what Range's length (or the flip) hides from shape inference
        a.shape = b.shape = shape
    states, h_n = _linear_recurrence(h0, a, b)
    states = _time_flipped(states) if reverse else states
    y = states if valid is None else op.Where(valid, states, zero)
    return y, h_n


def _mingru(x, h0, w_ih, b_ih=None, lengths=None, h_probe=None, reverse=False, parallel=True):
    """rnnlab::mingru (T,B,I) -> standard ops and one Scan: y (T,B,H), h_n (B,H).
    ``parallel`` chooses how torch solves the recurrence; the graph's Scan is the loop."""
    return _min_cell("mingru", x, h0, w_ih, b_ih, lengths, h_probe, reverse)


def _minlstm(x, h0, w_ih, b_ih=None, lengths=None, h_probe=None, reverse=False, parallel=True):
    """rnnlab::minlstm (T,B,I) -> standard ops and one Scan: y (T,B,H), h_n (B,H)."""
    return _min_cell("minlstm", x, h0, w_ih, b_ih, lengths, h_probe, reverse)


# --------------------------------------------------------------------------- layer norm

# The layer-normalised cells' recurrence reads h_{t-1} through W_hh and a normalisation, so
# no native node fits: each is a Scan whose body is the whole step. Its scanned inputs are
# u_t = LN(W_ih x_t; γ_ih) + b_ih (one MatMul and one LayerNormalization for all steps) and
# valid_t (B, 1); the weights are read from the enclosing scope. A padding step keeps the
# state. The reverse direction flips u, valid and the states in time. The bodies keep
# LayerNormalization's default ε, 1e-5, which is the cells' EPS (the onnxscript converter
# takes no constant from outside for a body's attribute; tests/export checks the two agree).


@script(_RNNLAB, default_opset=op)
def _lnlstm_recurrence(
    u: _Real, valid: BOOL, h0: _Real, c0: _Real, w_hh_t: _Real, gamma_hh: _Real,
    b_hh: _Real, gamma_c: _Real, beta_c: _Real,
) -> tuple[_Real, _Real, _Real]:
    """reference.lnlstm_forward's step over dim 0: the states h (T, B, H), h_n and c_n."""

    @graph()
    def step(h_prev, c_prev, u_t, valid_t):
        v = op.LayerNormalization(op.MatMul(h_prev, w_hh_t), gamma_hh, b_hh)
        i, f, g, o = op.Split(op.Add(u_t, v), axis=-1, num_outputs=4)
        c = op.Add(op.Mul(op.Sigmoid(f), c_prev), op.Mul(op.Sigmoid(i), op.Tanh(g)))
        m = op.Mul(op.Sigmoid(o), op.Tanh(op.LayerNormalization(c, gamma_c, beta_c)))
        h_t = op.Where(valid_t, m, h_prev)
        return h_t, op.Where(valid_t, c, c_prev), op.Identity(h_t)

    h_n, c_n, states = op.Scan(h0, c0, u, valid, body=step, num_scan_inputs=2)
    return states, h_n, c_n


@script(_RNNLAB, default_opset=op)
def _lngru_recurrence(
    u: _Real, valid: BOOL, h0: _Real, w_hh_t: _Real, gamma_hh: _Real, b_hh: _Real,
) -> tuple[_Real, _Real]:
    """reference.lngru_forward's step over dim 0: the states h (T, B, H) and h_n."""

    @graph()
    def step(h_prev, u_t, valid_t):
        v = op.LayerNormalization(op.MatMul(h_prev, w_hh_t), gamma_hh, b_hh)
        u_r, u_z, u_n = op.Split(u_t, axis=-1, num_outputs=3)
        v_r, v_z, v_n = op.Split(v, axis=-1, num_outputs=3)
        r = op.Sigmoid(op.Add(u_r, v_r))
        z = op.Sigmoid(op.Add(u_z, v_z))
        n = op.Tanh(op.Add(u_n, op.Mul(r, v_n)))
        h = op.Add(n, op.Mul(z, op.Sub(h_prev, n)))  # (1 - z) ⊙ n + z ⊙ h_{t-1}
        h_t = op.Where(valid_t, h, h_prev)
        return h_t, op.Identity(h_t)

    h_n, states = op.Scan(h0, u, valid, body=step, num_scan_inputs=2)
    return states, h_n


def _scanned_inputs(x, width: int, project, lengths, reverse, shares=()):
    """What a Scan of a step reads, in processing order: every step's input term
    project(x) (T, B, width), x's padding steps zeroed; valid (T, B, 1); the zoneout
    ``shares`` (0 where None). Also the function that puts the states back in time order,
    0 at padding steps."""
    zero = _constant(0, x.dtype.numpy())
    shape = None if x.shape is None else ir.Shape([*x.shape[:2], width])  # of the term
    valid, x = _valid_steps(x, lengths, zero)
    scanned = [project(x), valid]
    scanned += [op.Expand(zero, op.Shape(valid)) if k is None else k for k in shares]
    if reverse:
        scanned = [_time_flipped(t) for t in scanned]
    if shape is not None:  # what Range's length (or the flip) hides from shape inference
        scanned[0].shape = shape

    def outputs(states):
        states = _time_flipped(states) if reverse else states
        return states if lengths is None else op.Where(valid, states, zero)

    return scanned, outputs


def _input_term(w_ih, b_ih):
    """x -> W_ih x_t (+ b_ih) for every step, one MatMul."""

    def project(x):
        u = op.MatMul(x, op.Transpose(w_ih, perm=[1, 0]))
        return u if b_ih is None else op.Add(u, b_ih)

    return project


def _normalised_input_term(w_ih, b_ih, gamma_ih):
    """x -> LN(W_ih x_t; γ_ih) + b_ih for every step: a MatMul and a LayerNormalization."""

    def project(x):
        beta = _constant(0, w_ih.dtype.numpy(), w_ih.shape[0]) if b_ih is None else b_ih
        u, _, _ = op.LayerNormalization(  # (normalised, mean, 1/σ)
            op.MatMul(x, op.Transpose(w_ih, perm=[1, 0])), gamma_ih, beta, epsilon=EPS)
        return u

    return project


def _lnlstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, gamma_ih=None, gamma_hh=None,
            gamma_c=None, beta_c=None, lengths=None, h_probe=None, reverse=False):
    """rnnlab::lnlstm (T,B,I) -> MatMul, LayerNormalization, one Scan: y, h_n, c_n."""
    _refuse_probe(h_probe, "lnlstm")
    real = x.dtype.numpy()
    (u, valid), outputs = _scanned_inputs(x, w_ih.shape[0],
                                          _normalised_input_term(w_ih, b_ih, gamma_ih),
                                          lengths, reverse)
    b_hh = _constant(0, real, w_hh.shape[0]) if b_hh is None else b_hh
    beta_c = _constant(0, real, w_hh.shape[1]) if beta_c is None else beta_c
    states, h_n, c_n = _lnlstm_recurrence(u, valid, h0, c0, op.Transpose(w_hh, perm=[1, 0]),
                                          gamma_hh, b_hh, gamma_c, beta_c)
    return outputs(states), h_n, c_n


def _lngru(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, gamma_ih=None, gamma_hh=None,
           lengths=None, h_probe=None, reverse=False):
    """rnnlab::lngru (T,B,I) -> MatMul, LayerNormalization, one Scan: y (T,B,H), h_n."""
    _refuse_probe(h_probe, "lngru")
    (u, valid), outputs = _scanned_inputs(x, w_ih.shape[0],
                                          _normalised_input_term(w_ih, b_ih, gamma_ih),
                                          lengths, reverse)
    b_hh = _constant(0, x.dtype.numpy(), w_hh.shape[0]) if b_hh is None else b_hh
    states, h_n = _lngru_recurrence(u, valid, h0, op.Transpose(w_hh, perm=[1, 0]),
                                    gamma_hh, b_hh)
    return outputs(states), h_n


# --------------------------------------------------------------------------- zoneout

# The masked ops (rnnlab.ops_masked: recurrent dropout and zoneout, which a layer in eval
# runs for zoneout, k = p) mix h_{t-1} into h_t, which ONNX's LSTM and GRU cannot: a Scan
# whose body is the step of reference.lstm_masked / gru_masked, scanning u_t (every step's
# input term, one MatMul), valid_t and the zoneout shares k_t; d (recurrent dropout) and
# the weights are read from the enclosing scope.


@script(_RNNLAB, default_opset=op)
def _lstm_masked_recurrence(
    u: _Real, valid: BOOL, keep_h: _Real, keep_c: _Real, h0: _Real, c0: _Real, d: _Real,
    w_hh_t: _Real,
) -> tuple[_Real, _Real, _Real]:
    """reference.lstm_masked_forward's step (no projection) over dim 0: h (T,B,H), h_n, c_n."""

    @graph()
    def step(h_prev, c_prev, u_t, valid_t, k_h, k_c):
        i, f, g, o = op.Split(op.Add(u_t, op.MatMul(op.Mul(d, h_prev), w_hh_t)), axis=-1,
                              num_outputs=4)
        c_tilde = op.Add(op.Mul(op.Sigmoid(f), c_prev), op.Mul(op.Sigmoid(i), op.Tanh(g)))
        h_tilde = op.Mul(op.Sigmoid(o), op.Tanh(c_tilde))
        c = op.Add(c_tilde, op.Mul(k_c, op.Sub(c_prev, c_tilde)))  # k c_{t-1} + (1-k) c̃
        h = op.Add(h_tilde, op.Mul(k_h, op.Sub(h_prev, h_tilde)))
        h_t = op.Where(valid_t, h, h_prev)
        return h_t, op.Where(valid_t, c, c_prev), op.Identity(h_t)

    h_n, c_n, states = op.Scan(h0, c0, u, valid, keep_h, keep_c, body=step,
                               num_scan_inputs=4)
    return states, h_n, c_n


@script(_RNNLAB, default_opset=op)
def _gru_masked_recurrence(
    u: _Real, valid: BOOL, keep_h: _Real, h0: _Real, d: _Real, w_hh_t: _Real, b_hh: _Real,
) -> tuple[_Real, _Real]:
    """reference.gru_masked_forward's step (reset after the product) over dim 0."""

    # (the GRU's gates as in _lngru_recurrence: a function called inside a Scan body is
    # not inlined by the exporter's optimiser, so the two bodies each write them)
    @graph()
    def step(h_prev, u_t, valid_t, k_h):
        v = op.Add(op.MatMul(op.Mul(d, h_prev), w_hh_t), b_hh)
        u_r, u_z, u_n = op.Split(u_t, axis=-1, num_outputs=3)
        v_r, v_z, v_n = op.Split(v, axis=-1, num_outputs=3)
        r = op.Sigmoid(op.Add(u_r, v_r))
        z = op.Sigmoid(op.Add(u_z, v_z))
        n = op.Tanh(op.Add(u_n, op.Mul(r, v_n)))
        h_tilde = op.Add(n, op.Mul(z, op.Sub(h_prev, n)))  # (1 - z) ⊙ n + z ⊙ h_{t-1}
        h = op.Add(h_tilde, op.Mul(k_h, op.Sub(h_prev, h_tilde)))  # k h_{t-1} + (1-k) h̃
        h_t = op.Where(valid_t, h, h_prev)
        return h_t, op.Identity(h_t)

    h_n, states = op.Scan(h0, u, valid, keep_h, body=step, num_scan_inputs=3)
    return states, h_n


def _lstm_masked(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, drop_h=None,
                 keep_h=None, keep_c=None, lengths=None, h_probe=None, reverse=False):
    """rnnlab::lstm_masked (T,B,I) -> MatMul, one Scan of the masked step: y, h_n, c_n."""
    if w_hr is not None:
        raise ExportError(
            "LSTM with proj_size > 0 and zoneout or recurrent dropout cannot be exported to "
            "ONNX (the Scan of the masked LSTM has no projection). Export an LSTM without "
            "proj_size."
        )
    _refuse_probe(h_probe, "lstm_masked")
    bias = b_ih if b_hh is None else (b_hh if b_ih is None else op.Add(b_ih, b_hh))
    scanned, outputs = _scanned_inputs(x, w_ih.shape[0], _input_term(w_ih, bias), lengths,
                                       reverse, [keep_h, keep_c])
    d = _constant(1, x.dtype.numpy()) if drop_h is None else drop_h
    states, h_n, c_n = _lstm_masked_recurrence(*scanned, h0, c0, d,
                                               op.Transpose(w_hh, perm=[1, 0]))
    return outputs(states), h_n, c_n


def _gru_masked(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, drop_h=None, keep_h=None,
                lengths=None, h_probe=None, reverse=False, reset_after=True):
    """rnnlab::gru_masked (T,B,I) -> MatMul, one Scan of the masked step: y, h_n."""
    if not reset_after:
        raise ExportError(
            "GRU with reset_after=False and zoneout or recurrent dropout cannot be exported "
            "to ONNX yet (the Scan of the masked GRU resets after the recurrent product, as "
            "torch.nn). Export a GRU with reset_after=True, or without zoneout."
        )
    _refuse_probe(h_probe, "gru_masked")
    real = x.dtype.numpy()
    scanned, outputs = _scanned_inputs(x, w_ih.shape[0], _input_term(w_ih, b_ih), lengths,
                                       reverse, [keep_h])
    d = _constant(1, real) if drop_h is None else drop_h
    b_hh = _constant(0, real, w_hh.shape[0]) if b_hh is None else b_hh
    states, h_n = _gru_masked_recurrence(*scanned, h0, d, op.Transpose(w_hh, perm=[1, 0]),
                                         b_hh)
    return outputs(states), h_n


def translation_table() -> dict[Callable, Callable]:
    """The ``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``.

    Maps each classic rnnlab op to a translation emitting one native ONNX recurrent node,
    and the min, layer-normalised and masked (zoneout) ops to standard nodes and one
    ``Scan``::

        torch.onnx.export(model, (x,), "model.onnx", dynamo=True,
                          custom_translation_table=rnnlab.export.translation_table())

    :func:`to_onnx` adds dynamic shapes, weight folding, bidirectional fusion (without
    it a bidirectional layer is two single-direction nodes and a Concat) and a by-name
    refusal of graphs that use the ops' saved gate activations (through this table alone
    such a graph fails inside the exporter instead).
    """
    ops = torch.ops.rnnlab
    return {ops.lstm.default: _lstm, ops.gru.default: _gru, ops.rnn.default: _rnn,
            ops.mingru.default: _mingru, ops.minlstm.default: _minlstm,
            ops.lnlstm.default: _lnlstm, ops.lngru.default: _lngru,
            ops.lstm_masked.default: _lstm_masked, ops.gru_masked.default: _gru_masked}


# --------------------------------------------------------------------------- export


def to_onnx(
    model: torch.nn.Module,
    example_inputs: tuple[Any, ...],
    path: str | os.PathLike | None = None,
    *,
    example_kwargs: Mapping[str, Any] | None = None,
    dynamic: bool = True,
    dynamic_shapes: Any = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset_version: int | None = None,
    fuse_bidirectional: bool = True,
) -> torch.onnx.ONNXProgram:
    """Export ``model`` (any module built on rnnlab's layers) to ONNX; save it to ``path``.

    ``example_inputs`` (and ``example_kwargs``, e.g. ``{"lengths": lengths}``) are one
    example call of ``model``. With ``dynamic=True`` every dimension of every example
    tensor may vary unless the model fixes it (feature sizes, state layers), so batch and
    time stay symbolic; give examples whose batch and time are at least 2 and different
    from each other and from the feature sizes, or pass torch.export ``dynamic_shapes``
    yourself (it overrides ``dynamic``). The model is exported in eval mode (dropout off)
    and its mode is restored afterwards.

    Returns the ``torch.onnx.ONNXProgram`` (``.model_proto`` is the ONNX model; calling it
    runs onnxruntime). Raises :class:`ExportError` for features ONNX cannot express.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_inputs, tuple):
        raise TypeError(
            "example_inputs must be a tuple of the model's positional arguments, got "
            f"{type(example_inputs).__name__}; wrap a single input as (x,)"
        )
    kwargs = dict(example_kwargs or {})
    _check_layers(model)
    if output_names is None and isinstance(model, RNNBase):
        output_names = ["output", "h_n", "c_n"] if model.family == "lstm" else ["output", "h_n"]
    auto_dynamic = dynamic_shapes is None and dynamic
    if auto_dynamic:
        dynamic_shapes = _auto_dynamic_shapes(model, example_inputs, kwargs)

    was_training = model.training
    model.eval()
    try:
        exported = torch.export.export(
            model, example_inputs, kwargs or None, dynamic_shapes=dynamic_shapes, strict=False
        )
    finally:
        model.train(was_training)
    _check_saved_outputs_unused(exported)

    with _quiet_exporter():
        program = torch.onnx.export(
            exported,
            dynamo=True,
            custom_translation_table=translation_table(),
            input_names=input_names,
            output_names=output_names,
            opset_version=opset_version,
            verbose=False,
        )
    _fold_weights(program.model)
    if fuse_bidirectional:
        _fuse_bidirectional(program.model.graph)
    _drop_squeeze_unsqueeze(program.model.graph)
    onnxscript.optimizer.optimize_ir(program.model)
    _name_dynamic_dims(program.model.graph)
    if auto_dynamic:
        _check_time_and_batch_symbolic(program.model.graph)
    if path is not None:
        program.save(path)
    return program


# What torch's exporter prints on every export and that says nothing about this model: a
# log line per torchvision op when torchvision is not installed, and the FutureWarning of
# torch's own use of the deprecated pytree LeafSpec.
_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"
_LEAFSPEC_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's own noise for the duration of one export call only."""
    logger = logging.getLogger(_REGISTRY_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _LEAFSPEC_WARNING, FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _check_layers(model: torch.nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, RNNBase) and module.proj_size:
            raise ExportError(
                f"{name or 'model'} is an LSTM with proj_size={module.proj_size}: the LSTM "
                "projection (h_t = W_hr·(o ⊙ tanh c_t)) has no ONNX equivalent, and an exact "
                "decomposition would need a Loop over time steps. Export an LSTM without "
                "proj_size."
            )
        if isinstance(module, RNNBase) and module.zoneout and not module.reset_after:
            raise ExportError(
                f"{name or 'model'} is a GRU with zoneout={module.zoneout} and "
                "reset_after=False, which ONNX export does not support yet (zoneout exports "
                "with reset_after=True, torch.nn's default). Export a copy without zoneout "
                "or with reset_after=True."
            )


def _auto_dynamic_shapes(model: torch.nn.Module, args: tuple, kwargs: dict) -> dict:
    """torch.export dynamic shapes marking every dimension of every tensor as AUTO."""

    def spec(value):
        if isinstance(value, torch.Tensor):
            return dict.fromkeys(range(value.dim()), torch.export.Dim.AUTO)
        if isinstance(value, (list, tuple)):
            return type(value)(spec(v) for v in value)
        if isinstance(value, dict):
            return {k: spec(v) for k, v in value.items()}
        return None

    bound = inspect.signature(model.forward).bind(*args, **kwargs)
    return {name: spec(value) for name, value in bound.arguments.items()}


def _check_saved_outputs_unused(exported: torch.export.ExportedProgram) -> None:
    """Refuse graphs that use an op's saved activations: ONNX's nodes do not expose them."""
    graph = exported.graph_module.graph
    graph.eliminate_dead_code()  # e.g. the layers' split of the gates for recording
    exported.graph_module.recompile()
    for node in graph.nodes:
        family = _rnnlab_family(node)
        if family is None:
            continue
        for user in node.users:
            index = user.args[1] if user.target is operator.getitem else None
            if index is None or index >= _REAL_OUTPUTS[family]:
                raise ExportError(
                    f"the model uses the saved gate activations of rnnlab::{family} (output "
                    f"{index}, used by {user.name}); the exported graph (ONNX's native "
                    "operator or a Scan) does not expose the op's saved gate activations. "
                    "Export a model that returns only the layer's outputs and final states."
                )


def _rnnlab_family(node: torch.fx.Node) -> str | None:
    for family in _REAL_OUTPUTS:
        if node.target is getattr(torch.ops.rnnlab, family).default:
            return family
    return None


# --------------------------------------------------------------------------- graph passes


def _fold_weights(model: ir.Model) -> None:
    """Fold the weight re-layout (Gather, Unsqueeze, Concat, the min cells' Transpose, on
    initializers) at any size."""
    relayout = {"Gather", "Unsqueeze", "Concat", "CastLike", "Transpose"}
    onnxscript.optimizer.optimize_ir(
        model,
        should_fold=lambda node: True if node.op_type in relayout else None,
        output_size_limit=2**62,
    )


def _recurrent_nodes(graph: ir.Graph) -> list[ir.Node]:
    """The graph's native LSTM, GRU and RNN nodes, in graph order."""
    return [n for n in graph if n.domain in ("", "ai.onnx") and n.op_type in _RECURRENT_OPS]


def _sequences(graph: ir.Graph) -> list[tuple[ir.Node, ir.Value]]:
    """Each recurrence's node and the (T, B, ·) sequence it reads: a native node's X, a
    Scan's first scanned input (a_t of a min cell, u_t of a layer-normalised one)."""
    found = [(n, n.inputs[0]) for n in _recurrent_nodes(graph)]
    for node in graph:
        if node.domain in ("", "ai.onnx") and node.op_type == "Scan":
            scanned = node.attributes["num_scan_inputs"].as_int()
            found.append((node, node.inputs[len(node.inputs) - scanned]))
    return found


def _name_dynamic_dims(graph: ir.Graph) -> None:
    """Rename the symbolic time and batch dimensions of the recurrences' sequences (a native
    node's X, a Scan's a_t) to "time" and "batch" ("time_1", ... when a model has several
    independent ones) everywhere.

    Also turns back into integers the static dimensions that the exporter writes as
    symbols named by their value (e.g. "3"), which happens to dimensions marked
    ``Dim.AUTO`` that the model fixes."""
    names: dict[str, str] = {}
    for _, sequence in _sequences(graph):
        shape = sequence.shape
        if shape is None or len(shape) != 3:
            continue
        for dim, stem in zip(shape[:2], ("time", "batch"), strict=True):
            if isinstance(dim, ir.SymbolicDim) and dim.value and dim.value not in names:
                taken = sum(1 for v in names.values() if v.split("_")[0] == stem)
                names[dim.value] = stem if not taken else f"{stem}_{taken}"
    values = list(graph.inputs) + list(graph.outputs)
    values += [v for node in graph for v in node.outputs]
    for value in values:
        if value.shape is None:
            continue
        dims = [_renamed(d, names) for d in value.shape]
        value.shape = ir.Shape(dims)


def _check_time_and_batch_symbolic(graph: ir.Graph) -> None:
    """With automatic dynamic shapes, every recurrence must keep time and batch free."""
    for node, sequence in _sequences(graph):
        shape = sequence.shape
        if shape is None or len(shape) < 2:
            continue
        for dim, what in zip(shape[:2], ("time", "batch"), strict=True):
            if not isinstance(dim, ir.SymbolicDim):
                raise ExportError(
                    f"the {what} dimension of the exported {node.op_type} was fixed to {dim}: "
                    f"torch.export specialises example sizes 0 and 1. Export with an example "
                    f"whose time and batch are both at least 2, or pass dynamic=False for a "
                    f"fixed-shape model."
                )


def _renamed(dim, names: dict[str, str]):
    if not isinstance(dim, ir.SymbolicDim) or dim.value is None:
        return dim
    if dim.value.isdigit():
        return int(dim.value)
    return ir.SymbolicDim(names[dim.value]) if dim.value in names else dim


def _direction_of(node: ir.Node) -> str:
    attr = node.attributes.get("direction")
    return "forward" if attr is None else attr.as_string()


def _same_attributes(a: ir.Node, b: ir.Node) -> bool:
    def plain(node):
        return {k: repr(v.value) for k, v in node.attributes.items() if k != "direction"}

    return plain(a) == plain(b)


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _stack(graph: ir.Graph, a: ir.Value | None, b: ir.Value | None, before: ir.Node):
    """Concatenate two per-direction inputs along ONNX's direction axis 0."""
    if a is None and b is None:
        return None
    if a.const_value is not None and b.const_value is not None:
        array = np.concatenate([a.const_value.numpy(), b.const_value.numpy()], axis=0)
        value = ir.Value(
            name=f"{a.name}_bidirectional",
            type=ir.TensorType(a.const_value.dtype),
            shape=ir.Shape(array.shape),
            const_value=ir.tensor(array),
        )
        graph.register_initializer(value)
        return value
    concat = ir.node("Concat", [a, b], attributes={"axis": 0})
    graph.insert_before(before, concat)
    return concat.outputs[0]


def _fuse_bidirectional(graph: ir.Graph) -> int:
    """Fuse each forward/reverse pair of recurrent nodes over the same input into one node.

    rnnlab runs the two directions of a bidirectional layer as two ops, hence two ONNX
    nodes reading the same X (and the same sequence_lens). They become one node with
    ``direction="bidirectional"`` whose W, R, B and initial states stack the two
    directions; its outputs are split back, and the concatenation of the two directions'
    outputs is rewritten to one Transpose + Reshape. Returns the number of fused pairs.
    """
    fused = 0
    forward = [n for n in _recurrent_nodes(graph) if _direction_of(n) == "forward"]
    reverse = [n for n in _recurrent_nodes(graph) if _direction_of(n) == "reverse"]
    for a in forward:
        partner = next(
            (
                b for b in reverse
                if b.op_type == a.op_type
                and b.inputs[0] is a.inputs[0]
                and _input(b, 4) is _input(a, 4)
                and _same_attributes(a, b)
                and all(
                    (_input(a, k) is None) == (_input(b, k) is None)
                    for k in range(1, max(len(a.inputs), len(b.inputs)))
                )
            ),
            None,
        )
        if partner is None:
            continue
        reverse.remove(partner)
        _fuse_pair(graph, a, partner)
        fused += 1
    if fused:
        graph.sort()
        _merge_direction_concats(graph)
    return fused


def _fuse_pair(graph: ir.Graph, a: ir.Node, b: ir.Node) -> None:
    anchor = b if list(graph).index(b) > list(graph).index(a) else a
    inputs = [a.inputs[0]]
    for k in range(1, max(len(a.inputs), len(b.inputs))):
        if k == 4:  # sequence_lens, shared
            inputs.append(_input(a, 4))
        else:
            inputs.append(_stack(graph, _input(a, k), _input(b, k), anchor))
    attributes = {k: v.value for k, v in a.attributes.items() if k != "direction"}
    attributes["direction"] = "bidirectional"
    if "activations" in attributes:  # one list per direction
        attributes["activations"] = list(attributes["activations"]) * 2
    node = ir.node(a.op_type, inputs, attributes=attributes, num_outputs=len(a.outputs))
    graph.insert_after(anchor, node)
    sizes = ir.node("Constant", [], attributes={"value": ir.tensor(np.array([1, 1]))})
    splits = [sizes]
    for index, (out_a, out_b) in enumerate(zip(a.outputs, b.outputs, strict=True)):
        axis = 1 if index == 0 else 0  # Y is (T, D, B, H); Y_h, Y_c are (D, B, H)
        split = ir.node("Split", [node.outputs[index], sizes.outputs[0]],
                        attributes={"axis": axis}, num_outputs=2)
        node.outputs[index].name = out_a.name + "_bidirectional"
        splits.append(split)
        for old, new in ((out_a, split.outputs[0]), (out_b, split.outputs[1])):
            new.name = old.name
            old.name = None
            new.shape, new.type = old.shape, old.type
            old.replace_all_uses_with(new, replace_graph_outputs=True)
    graph.insert_after(node, splits)
    graph.remove([a, b], safe=True)


def _merge_direction_concats(graph: ir.Graph) -> None:
    """Concat(Squeeze(Y[:, 0], 1), Squeeze(Y[:, 1], 1), axis=2), Y = (T, 2, B, H) the output
    of a bidirectional node split by direction -> Reshape(Transpose(Y), (0, 0, -1))."""
    for concat in [n for n in graph if n.op_type == "Concat" and len(n.inputs) == 2]:
        if concat.attributes["axis"].as_int() not in (2, -1):
            continue
        squeezes = [v.producer() for v in concat.inputs]
        if any(p is None or p.op_type != "Squeeze" or _axes(p) != [1] for p in squeezes):
            continue
        halves = [p.inputs[0] for p in squeezes]
        split = halves[0].producer()
        if split is None or split.op_type != "Split" or list(split.outputs) != halves:
            continue
        axis = split.attributes.get("axis")
        if axis is None or axis.as_int() != 1:
            continue
        y = split.inputs[0]
        node = y.producer()
        if node is None or node.op_type not in _RECURRENT_OPS or y is not node.outputs[0]:
            continue
        transpose = ir.node("Transpose", [y], attributes={"perm": [0, 2, 1, 3]})
        shape = ir.node("Constant", [], attributes={"value": ir.tensor(np.array([0, 0, -1]))})
        reshape = ir.node("Reshape", [transpose.outputs[0], shape.outputs[0]])
        graph.insert_before(concat, [transpose, shape, reshape])
        out, new = concat.outputs[0], reshape.outputs[0]
        new.shape, new.type = out.shape, out.type
        name = out.name
        out.replace_all_uses_with(new, replace_graph_outputs=True)
        out.name = None
        new.name = name
        graph.remove(concat, safe=True)


def _axes(node: ir.Node) -> list[int] | None:
    """Constant axes input of a Squeeze/Unsqueeze node (opset 13+), or None."""
    axes = _input(node, 1)
    if axes is None or axes.const_value is None:
        return None
    return [int(a) for a in axes.const_value.numpy().reshape(-1)]


def _drop_squeeze_unsqueeze(graph: ir.Graph) -> None:
    """Unsqueeze(Squeeze(v, [0]), [0]) -> v: a direction's state split off and re-stacked."""
    for unsqueeze in [n for n in graph if n.op_type == "Unsqueeze"]:
        squeeze = unsqueeze.inputs[0].producer()
        if squeeze is None or squeeze.op_type != "Squeeze":
            continue
        if _axes(unsqueeze) != [0] or _axes(squeeze) != [0]:
            continue
        out, source = unsqueeze.outputs[0], squeeze.inputs[0]
        if out.is_graph_output():
            continue
        out.replace_all_uses_with(source)

"""Sequence layers: torch.nn-compatible RNN, LSTM and GRU on rnnlab's own ops.

Constructor arguments, input forms (batched, unbatched, ``PackedSequence``), outputs,
state shapes, parameter names, gate order, initialisation and ``state_dict`` are those
of ``torch.nn.RNN``/``LSTM``/``GRU``: a torch.nn state_dict loads into the rnnlab layer
and back, and both compute the same function. The recurrence itself runs in the ops of
:mod:`rnnlab.ops` (one call per layer and direction; both directions of a bidirectional
RNN layer in training in one call of :mod:`rnnlab.ops_bidirectional`), never in torch's
RNN kernels.

Shape legend (batch_first swaps the first two dimensions of input and output only):

    input   (T, B, I)          or (T, I) unbatched, or a PackedSequence
    output  (T, B, D·P)        D = 2 if bidirectional else 1
    h_0/h_n (L·D, B, P)        L = num_layers; P = proj_size or hidden_size
    c_0/c_n (L·D, B, H)        LSTM only

Errors are those of :mod:`rnnlab.nn._checks`: torch.nn's exception classes (a wrong
size, shape or device is an :class:`~rnnlab.nn.errors.ArgumentError`, both ``ValueError``
and ``RuntimeError``) with messages that say what was expected.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnnlab import ops, ops_bidirectional
from rnnlab.nn import _checks, _layer_norm, regularise
from rnnlab.nn._empty import empty_outputs
from rnnlab.nn.errors import ArgumentError

__all__ = ["GRU", "LSTM", "RNN", "RNNBase"]

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_NONLINEARITIES = ("tanh", "relu")
_MODES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN_TANH"}


class RNNBase(nn.Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    ``family`` is ``"rnn"``, ``"lstm"`` or ``"gru"``. Beyond torch.nn's arguments:
    ``nonlinearity`` (RNN), ``proj_size`` (LSTM), ``reset_after`` (GRU),
    ``forget_bias`` (LSTM), ``layer_norm`` (LSTM, GRU: :mod:`rnnlab.nn._layer_norm`),
    ``check_finite`` (reject NaN/Inf inputs) and the LSTM/GRU regularisers
    ``weight_drop``, ``recurrent_dropout``, ``zoneout`` (:mod:`rnnlab.nn.regularise`), kept
    as attributes of those names.
    """

    layer_norm = False  # the layer-normalised cells (set by LSTM/GRU(layer_norm=True))
    weight_drop = recurrent_dropout = zoneout = 0.0  # (layers that set none: the min cells)

    def __init__(
        self,
        family: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        nonlinearity: str = "tanh",
        reset_after: bool = True,
        forget_bias: float | None = None,
        check_finite: bool = False,
        layer_norm: bool = False,
        weight_drop: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float | tuple[float, float] = 0.0,
    ) -> None:
        super().__init__()
        if family not in _GATES:
            raise ValueError(f"family must be one of {sorted(_GATES)}, got {family!r}")
        self.family = family
        self._check_layer_arguments(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        )
        self.proj_size = _checks.positive_int("proj_size", proj_size, minimum=0)
        self.check_finite = _checks.boolean("check_finite", check_finite)
        self.layer_norm = _checks.layer_norm(layer_norm, family, self.proj_size)
        if self.layer_norm and not reset_after:
            raise ArgumentError(
                "layer_norm=True needs reset_after=True (the layer-normalised GRU resets "
                "after the recurrent product, as Haste's); got reset_after=False"
            )
        self.weight_drop, self.recurrent_dropout, self.zoneout = regularise.check(
            family, weight_drop, recurrent_dropout, zoneout
        )
        if self.layer_norm and (self.recurrent_dropout or self.zoneout):
            raise ArgumentError(
                "layer_norm=True combines with weight_drop, not (yet) with recurrent_dropout "
                "or zoneout (there is no layer-normalised masked op); got recurrent_dropout="
                f"{self.recurrent_dropout}, zoneout={self.zoneout}"
            )
        if self.proj_size and family != "lstm":
            raise ValueError(
                f"proj_size is only supported by LSTM, not {family.upper()}; got "
                f"proj_size={proj_size}"
            )
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size, got proj_size={proj_size} and "
                f"hidden_size={hidden_size}"
            )
        if nonlinearity not in _NONLINEARITIES:
            raise ArgumentError(
                f"unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'"
            )
        self.nonlinearity = nonlinearity
        self.reset_after = _checks.boolean("reset_after", reset_after)
        if forget_bias is not None and (
            isinstance(forget_bias, bool) or not isinstance(forget_bias, numbers.Real)
        ):
            raise TypeError(f"forget_bias must be a number or None, got {forget_bias!r}")
        self.forget_bias = None if forget_bias is None else float(forget_bias)
        self._warn_unused_dropout(stacklevel=4)

        gate_size = _GATES[family] * self.hidden_size
        real_hidden = self.proj_size or self.hidden_size

        def shapes(layer_in: int) -> list[tuple[str, tuple[int, ...]]]:
            named = [("weight_ih", (gate_size, layer_in)), ("weight_hh", (gate_size, real_hidden))]
            if self.bias:
                named += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
            if self.proj_size:
                named.append(("weight_hr", (self.proj_size, self.hidden_size)))
            if self.layer_norm:
                named += _layer_norm.parameter_shapes(family, self.hidden_size, self.bias)
            return named

        self._make_parameters(shapes, real_hidden, device, dtype)

    def _check_layer_arguments(
        self, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
    ) -> None:
        """Check and set torch.nn's arguments that every rnnlab layer takes."""
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.bias = _checks.boolean("bias", bias)
        self.batch_first = _checks.boolean("batch_first", batch_first)
        self.dropout = _checks.probability("dropout", dropout)
        self.bidirectional = _checks.boolean("bidirectional", bidirectional)

    def _warn_unused_dropout(self, stacklevel: int) -> None:
        """Warn, as torch.nn does, that dropout between layers does nothing with one layer
        (`stacklevel`: the frames from here up to the user's constructor call)."""
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout is applied between stacked layers, so it has no effect with "
                f"num_layers=1 (got dropout={self.dropout})",
                stacklevel=stacklevel,
            )

    def _layers_and_directions(self):
        """(layer, direction, parameter name suffix ``_l{k}[_reverse]``) in torch.nn's order."""
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                yield layer, direction, f"_l{layer}" + ("_reverse" if direction else "")

    def _make_parameters(self, shapes, layer_out: int, device, dtype) -> None:
        """Create every layer and direction's parameters, ``shapes(layer_in)`` giving their
        (stem, shape) in order (layer_in: input_size for layer 0, else D·layer_out), then
        initialise them (:meth:`reset_parameters`)."""
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer, _, suffix in self._layers_and_directions():
            layer_in = self.input_size if layer == 0 else layer_out * self.num_directions
            names = []
            for stem, shape in shapes(layer_in):
                name = stem + suffix
                setattr(self, name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
                names.append(name)
            self._flat_weights_names.extend(names)
            self._all_weights.append(names)
        self.reset_parameters()
        self._recording = None  # set by rnnlab.nn.record

    @property
    def num_directions(self) -> int:
        """2 for a bidirectional layer, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def mode(self) -> str:
        """torch.nn's name of the cell: ``"LSTM"``, ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"``."""
        if self.family == "rnn" and self.nonlinearity == "relu":
            return "RNN_RELU"
        return _MODES[self.family]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters per layer and direction, in torch.nn's order."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    @property
    def _flat_weights(self) -> list[Tensor]:
        """The weights in ``_flat_weights_names`` order, as torch.nn's attribute of that
        name: each is whatever the attribute holds now (a reparametrised weight, such as
        ``weight_norm``'s, is a plain tensor)."""
        return [getattr(self, name) for name in self._flat_weights_names]

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter ~ U(-1/√H, 1/√H).

        With ``forget_bias`` set (LSTM), the forget-gate slice of ``bias_ih`` is set to
        ``forget_bias`` and that of ``bias_hh`` to 0, so the gate starts at
        σ(forget_bias + W·[x, h]).
        With ``layer_norm``, the normalisations' gains are 1 and their biases 0 (the other
        parameters draw the same numbers as without).
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, weight in self.named_parameters():
            if not _layer_norm.is_layer_norm_parameter(name):
                nn.init.uniform_(weight, -bound, bound)
        _layer_norm.reset(self)
        if self.forget_bias is not None and self.bias and self.family == "lstm":
            H = self.hidden_size
            with torch.no_grad():
                for _, _, suffix in self._layers_and_directions():
                    getattr(self, "bias_ih" + suffix)[H : 2 * H].fill_(self.forget_bias)
                    getattr(self, "bias_hh" + suffix)[H : 2 * H].zero_()

    def flatten_parameters(self) -> None:
        """No-op, kept for torch.nn compatibility (rnnlab needs no flat weight buffer)."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.family == "rnn" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.family == "gru" and not self.reset_after:
            s += ", reset_after=False"
        if self.forget_bias is not None:
            s += f", forget_bias={self.forget_bias}"
        if self.layer_norm:
            s += ", layer_norm=True"
        return s + regularise.describe(self)

    # ------------------------------------------------------------------ forward

    def forward(self, input, hx=None, *, lengths=None):
        """Run the layer stack over ``input``.

        ``input`` is (T, B, I) (``batch_first``: (B, T, I)), unbatched (T, I), or a
        ``PackedSequence``. ``hx`` is the initial state (zeros if None): h_0 for RNN and
        GRU, the pair (h_0, c_0) for LSTM. ``lengths`` (B,), an rnnlab extension, gives
        per-sample valid lengths of a padded batch: outputs past a sample's length are
        zero and its final state is the one at its last valid step (the semantics of a
        PackedSequence, without packing). Returns ``(output, h_n)`` or, for LSTM,
        ``(output, (h_n, c_n))``.
        """
        ref = self._reference_parameter()
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("lengths must not be given with a PackedSequence input")
            _checks.same_dtype_device("input", input.data, ref)
            if self._runs_packed_rows():
                return self._forward_rows(input, hx)
            x, lengths_cpu, rows = _unpack(input)
            batched = True
        else:
            _checks.tensor("input", input)
            if input.dim() not in (2, 3):
                raise ArgumentError(
                    f"input must be 3-D {self._input_legend()} or 2-D unbatched (T, I), "
                    f"got a {input.dim()}-D tensor of shape {tuple(input.shape)}"
                )
            _checks.same_dtype_device("input", input, ref)
            batched = input.dim() == 3
            if not batched:
                x = input.unsqueeze(1)
            elif self.batch_first:
                x = input.transpose(0, 1)
            else:
                x = input
        T, B, features = x.shape
        if features != self.input_size:
            raise ArgumentError(
                f"input has {features} features in its last dimension, expected "
                f"input_size={self.input_size}"
            )
        if T < 1:
            raise ArgumentError("input has 0 time steps, expected at least 1")
        if self.check_finite:
            _checks.finite("input", x)
        if packed:
            steps = lengths_cpu.to(x.device)
        elif lengths is not None:
            if not batched:
                raise ValueError("lengths is only meaningful for batched input")
            steps = _checks.lengths(lengths, B, T, x.device)
        else:
            steps = None
        h0, c0 = self._initial_state(hx, B, batched, x)

        if B == 0:
            output, h_n, c_n = self._empty_result(x, h0, c0)
        else:
            output, h_n, c_n = self._run_layers(x.contiguous(), h0, c0, steps, batched)

        if packed:
            output = _repack(output, input, rows)
        elif not batched:
            output = output.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        return (output, (h_n, c_n)) if self.family == "lstm" else (output, h_n)

    def _runs_packed_rows(self) -> bool:
        """Whether a PackedSequence runs as packed rows (:meth:`_forward_rows`): the plain
        ops take them; the layer-normalised, masked and minimal ones, and recording (which
        shows (T, B) tensors), get the padded form."""
        if self.family not in ("rnn", "lstm", "gru"):
            return False
        return not (self.layer_norm or self._recording is not None
                    or regularise.has_masks(self))

    def _forward_rows(self, input: PackedSequence, hx):
        """:meth:`forward` of a PackedSequence on its rows: every layer's ops take and return
        the packed layout (samples longest first, as ``input.data``), so no padding step is
        computed or stored; the state is put in that order and back, as torch.nn does."""
        x, sizes = input.data, input.batch_sizes
        B = int(sizes[0])
        if x.dim() != 2:
            raise ArgumentError(
                f"a PackedSequence's data must be 2-D (rows, input_size), got shape "
                f"{tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise ArgumentError(
                f"input has {x.shape[-1]} features in its last dimension, expected "
                f"input_size={self.input_size}"
            )
        if self.check_finite:
            _checks.finite("input", x)
        lengths = (sizes[:, None] > torch.arange(B)).sum(0).to(x.device)  # longest first
        h0, c0 = self._initial_state(hx, B, True, x)
        order, back = input.sorted_indices, input.unsorted_indices
        if order is not None:
            h0 = h0.index_select(1, order)
            c0 = None if c0 is None else c0.index_select(1, order)
        output, h_n, c_n = self._run_layers(x.contiguous(), h0, c0, lengths, True)
        if back is not None:
            h_n = h_n.index_select(1, back)
            c_n = None if c_n is None else c_n.index_select(1, back)
        output = PackedSequence(output, sizes, order, back)
        return (output, (h_n, c_n)) if self.family == "lstm" else (output, h_n)

    def _empty_result(
        self, x: Tensor, h0: Tensor, c0: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """A batch of 0 sequences: (T, 0, D·P) output and (L·D, 0, ·) states, as torch.nn."""
        states = [h0] if c0 is None else [h0, c0]
        shapes = [(x.shape[0], 0, self.num_directions * h0.shape[2])]
        shapes += [tuple(state.shape) for state in states]
        sources = [x, *states, *self._flat_weights]
        output, h_n, *rest = empty_outputs(shapes, sources)
        return output, h_n, (rest[0] if rest else None)

    def _reference_parameter(self) -> Tensor:
        return getattr(self, self._flat_weights_names[0])

    def _input_legend(self) -> str:
        return "(B, T, I)" if self.batch_first else "(T, B, I)"

    def _initial_state(
        self, hx, B: int, batched: bool, x: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """Validate ``hx`` and return (h0, c0) as (L·D, B, ·) tensors (c0 None unless LSTM)."""
        LD = self.num_layers * self.num_directions
        P = self.proj_size or self.hidden_size
        H = self.hidden_size
        ref = self._reference_parameter()
        if hx is None:
            h0 = x.new_zeros(LD, B, P)
            c0 = x.new_zeros(LD, B, H) if self.family == "lstm" else None
            return h0, c0
        if self.family == "lstm":
            if not isinstance(hx, (tuple, list)):
                raise TypeError(
                    f"hx for LSTM must be a tuple (h_0, c_0) of two tensors, got "
                    f"{type(hx).__name__}"
                )
            if len(hx) != 2:
                raise ArgumentError(
                    f"hx for LSTM must be a tuple (h_0, c_0) of two tensors, got a "
                    f"{type(hx).__name__} of {len(hx)}"
                )
            states = [("h_0", hx[0], P), ("c_0", hx[1], H)]
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(
                    f"hx for {self.family.upper()} must be a tensor h_0, got {type(hx).__name__}"
                )
            states = [("h_0", hx, P)]
        out = []
        for name, state, width in states:
            _checks.tensor(name, state)
            _checks.same_dtype_device(name, state, ref)
            if batched:
                if state.dim() != 3:
                    raise ArgumentError(
                        f"for batched 3-D input, {name} must be 3-D (num_layers * "
                        f"num_directions, batch, {width}), got shape {tuple(state.shape)}"
                    )
                _checks.shape(
                    name, state, (LD, B, width), "num_layers * num_directions, batch, features"
                )
            else:
                if state.dim() != 2:
                    raise ArgumentError(
                        f"for unbatched 2-D input, {name} must be 2-D "
                        f"(num_layers * num_directions, {width}), got shape {tuple(state.shape)}"
                    )
                _checks.shape(name, state, (LD, width), "num_layers * num_directions, features")
                state = state.unsqueeze(1)
            if self.check_finite:
                _checks.finite(name, state)
            out.append(state)
        return out[0], (out[1] if len(out) == 2 else None)

    def _run_layers(
        self, x: Tensor, h0: Tensor, c0: Tensor | None, lengths: Tensor | None, batched: bool
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        h_n, c_n = [], []
        layer_input = x
        recording = self._recording
        infer = recording is None and not self._needs_autograd(x, h0, c0)
        for layer in range(self.num_layers):
            if self._runs_paired(layer_input, infer):
                layer_input = self._run_both(layer_input, h0, layer, lengths, recording,
                                             batched, h_n)
            else:
                outputs = []
                for direction in range(self.num_directions):
                    index = layer * self.num_directions + direction
                    weights = self.all_weights[index]
                    probe = None
                    if recording is not None:
                        probe = recording.probe(self, layer, direction, layer_input, batched)
                    y, h, c, saved = self._run_direction(
                        layer_input, h0[index], None if c0 is None else c0[index], weights,
                        lengths, probe, reverse=bool(direction), infer=infer,
                    )
                    if recording is not None:
                        recording.store_gates(self, layer, direction, saved, y, batched)
                    outputs.append(y)
                    h_n.append(h)
                    if c is not None:
                        c_n.append(c)
                layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        return layer_input, torch.stack(h_n), (torch.stack(c_n) if c_n else None)

    def _needs_autograd(self, x: Tensor, h0: Tensor, c0: Tensor | None) -> bool:
        """Whether this call must be differentiable (or is being traced by torch.export,
        whose ONNX translations know the differentiable ops): otherwise the layers run the
        inference ops, which keep no activations. Under torch.compile the same rule holds
        (Dynamo guards on grad mode and requires_grad)."""
        if torch.compiler.is_exporting():
            return True
        if not torch.is_grad_enabled():
            return False
        if x.requires_grad or h0.requires_grad or (c0 is not None and c0.requires_grad):
            return True
        return any(getattr(self, name).requires_grad for name in self._flat_weights_names)

    def _runs_paired(self, x: Tensor, infer: bool) -> bool:
        """Whether a layer runs both its directions in one op,
        :func:`rnnlab.ops_bidirectional.rnn_bidirectional`: a bidirectional RNN layer in a
        differentiable call whose input needs a gradient, except while ``torch.export``
        traces (the ONNX translations know ``rnnlab::rnn``)."""
        return (self.family == "rnn" and self.bidirectional and not infer and x.requires_grad
                and not torch.compiler.is_exporting())

    def _run_both(self, x, h0, layer, lengths, recording, batched, h_n) -> Tensor:
        """Both directions of ``layer`` in one op call: appends their final states to
        ``h_n``, records their gates, and returns the layer's output (T, B, 2H)."""
        own = []
        for direction in range(2):
            index = 2 * layer + direction
            w = self.all_weights[index]
            probe = None
            if recording is not None:
                probe = recording.probe(self, layer, direction, x, batched)
            b_ih, b_hh = (w[2], w[3]) if self.bias else (None, None)
            own += [h0[index], w[0], w[1], b_ih, b_hh, probe]
        y, *finals = ops_bidirectional.rnn_bidirectional(x, *own, lengths,
                                                         self.nonlinearity == "relu")
        H = self.hidden_size
        for direction, (h, a) in enumerate((finals[:2], finals[2:])):
            h_n.append(h)
            if recording is not None:
                y_own = y[..., direction * H : (direction + 1) * H]
                recording.store_gates(self, layer, direction, {"a": a}, y_own, batched)
        return y

    def _run_direction(self, x, h0, c0, weights, lengths, probe, reverse, infer=False):
        """One op call: returns (y, h_n, c_n or None, {gate name: (T, B, H)}); with
        ``infer``, the inference op, and no gates."""
        weights = regularise.training_weights(self, weights)
        masks = regularise.draw_masks(self, x, h0)
        if masks is not None:
            return regularise.run_masked(self, x, h0, c0, weights, lengths, probe, reverse, masks)
        w_ih, w_hh = weights[0], weights[1]
        b_ih, b_hh = (weights[2], weights[3]) if self.bias else (None, None)
        H = self.hidden_size
        if self.layer_norm:
            return _layer_norm.run(
                self.family, x, h0, c0, weights, self.bias, lengths, probe, reverse, infer
            )
        if self.family == "lstm":
            w_hr = weights[-1] if self.proj_size else None
            if infer:
                y, h, c = ops.lstm_infer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
                                         reverse)
                return y, h, c, {}
            y, h, c, gates, cells = ops.lstm(
                x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, probe, reverse
            )
            i, f, g, o = gates.split(H, dim=-1)
            return y, h, c, {"i": i, "f": f, "g": g, "o": o, "c": cells}
        if self.family == "gru":
            if infer:
                y, h = ops.gru_infer(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse,
                                     self.reset_after)
                return y, h, None, {}
            y, h, gates = ops.gru(
                x, h0, w_ih, w_hh, b_ih, b_hh, lengths, probe, reverse, self.reset_after
            )
            r, z, n, _ = gates.split(H, dim=-1)
            return y, h, None, {"r": r, "z": z, "n": n}
        relu = self.nonlinearity == "relu"
        if infer:
            y, h = ops.rnn_infer(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, relu)
            return y, h, None, {}
        y, h, a = ops.rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, probe, reverse, relu)
        return y, h, None, {"a": a}


def _packed_rows(packed: PackedSequence) -> Tensor:
    """For each row of ``packed.data`` (N, F), its row t·B + b in the padded (T, B, F) view,
    b in the caller's batch order: step t holds the first batch_sizes[t] samples of the
    sorted order."""
    sizes = packed.batch_sizes  # (T,) int64 on the CPU
    B = int(sizes[0])
    order = torch.arange(B) if packed.sorted_indices is None else packed.sorted_indices.cpu()
    t = torch.repeat_interleave(torch.arange(len(sizes)), sizes)  # each row's step
    rank = torch.arange(len(t)) - (torch.cumsum(sizes, 0) - sizes)[t]  # its place in the step
    return (t * B + order[rank]).to(packed.data.device)


def _unpack(packed: PackedSequence) -> tuple[Tensor, Tensor, Tensor]:
    """The padded (T, B, I) input (zeros past each length, the caller's batch order), the
    lengths (B,) on the CPU, and :func:`_packed_rows`: one scatter, no sorted copy."""
    rows = _packed_rows(packed)
    sizes = packed.batch_sizes
    T, B, features = len(sizes), int(sizes[0]), packed.data.shape[-1]
    x = packed.data.new_zeros(T * B, features).index_copy(0, rows, packed.data)
    lengths = (sizes[:, None] > torch.arange(B)).sum(0)  # in the sorted order
    if packed.unsorted_indices is not None:
        lengths = lengths[packed.unsorted_indices.cpu()]
    return x.view(T, B, features), lengths, rows


def _repack(output: Tensor, like: PackedSequence, rows: Tensor) -> PackedSequence:
    """Pack a padded (T, B, F) output in the batch order and layout of ``like`` (rows: its
    :func:`_packed_rows`): one gather, no sorted copy of the whole output."""
    T, B, features = output.shape
    data = output.reshape(T * B, features).index_select(0, rows)
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RNN(RNNBase):
    r"""Elman recurrent network, torch.nn.RNN-compatible.

    Per layer and direction, at every step t (H = hidden_size):

        h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)          (B, H)

    or ``relu`` instead of tanh with ``nonlinearity="relu"``. Parameters ``weight_ih_l{k}``
    (H, I or D·H), ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (H,),
    with ``_reverse`` for the backward direction; all ~ U(-1/√H, 1/√H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        proj_size: int = 0,
        check_finite: bool = False,
    ) -> None:
        super().__init__(
            "rnn", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype, nonlinearity=nonlinearity,
            check_finite=check_finite,
        )


class LSTM(RNNBase):
    r"""Long short-term memory, torch.nn.LSTM-compatible.

    Per layer and direction, at every step t (H = hidden_size, P = proj_size or H):

        i = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate        (B, H)
        f = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
        g = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)   candidate values
        o = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
        c_t = f ⊙ c_{t-1} + i ⊙ g                          cell state        (B, H)
        h_t = o ⊙ tanh(c_t)                                hidden state      (B, H)
        h_t = W_hr (o ⊙ tanh(c_t))                         with proj_size    (B, P)

    ``weight_ih_l{k}`` (4H, I) stacks the gates in the order i, f, g, o, as torch.nn.
    ``forget_bias`` (rnnlab extension) initialises the forget-gate bias, e.g. 1.0 as
    recommended by Gers et al. (2000) and Jozefowicz et al. (2015).

    ``layer_norm=True`` (rnnlab extension; Ba, Kiros & Hinton 2016, in Haste's
    LayerNormLSTM form, ε = 1e-5) normalises the two projections over all 4H gate
    entries and the cell state's read-out::

        a_t = LN(W_ih x_t; γ_ih) + b_ih + LN(W_hh h_{t-1}; γ_hh) + b_hh   (gates i, f, g, o)
        c_t = f ⊙ c_{t-1} + i ⊙ g,      h_t = o ⊙ tanh(LN(c_t; γ_c, β_c))

    with the extra parameters ``gamma_ih_l{k}`` (4H,), ``gamma_hh_l{k}`` (4H,),
    ``gamma_c_l{k}`` (H,) and, with ``bias``, ``beta_c_l{k}`` (H,) (``_reverse`` for the
    backward direction; gains start at 1, β_c at 0). Not with ``proj_size``.
    :func:`rnnlab.export.convert.from_haste_layer_norm_lstm` reads Haste's weights.

    Regularisers (rnnlab extensions, off by default, combinable;
    :mod:`rnnlab.nn.regularise`): ``weight_drop=p`` drops W_hh's entries (one mask per
    call, training only), ``recurrent_dropout=p`` drops h_{t-1} inside W_hh h_{t-1} (one
    mask per sequence, training only), ``zoneout=p`` or ``(p_h, p_c)`` keeps each unit of
    h (and c) at its previous value with probability p (a fresh mask per step; in eval
    the expectation). With ``layer_norm``, only ``weight_drop`` (for now).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        forget_bias: float | None = None,
        check_finite: bool = False,
        layer_norm: bool = False,
        weight_drop: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float | tuple[float, float] = 0.0,
    ) -> None:
        super().__init__(
            "lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype, forget_bias=forget_bias,
            check_finite=check_finite, layer_norm=layer_norm, weight_drop=weight_drop,
            recurrent_dropout=recurrent_dropout, zoneout=zoneout,
        )


class GRU(RNNBase):
    r"""Gated recurrent unit (Cho et al. 2014), torch.nn.GRU-compatible.

    Per layer and direction, at every step t (H = hidden_size):

        r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)               reset gate    (B, H)
        z = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)               update gate
        n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn))      candidate
        h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

    ``weight_ih_l{k}`` (3H, I) stacks r, z, n as torch.nn. With ``reset_after=False``
    (rnnlab extension) the reset gate acts before the recurrent matmul, as in the
    original paper: n = tanh(W_in x_t + b_in + W_hn (r ⊙ h_{t-1}) + b_hn).

    ``layer_norm=True`` (rnnlab extension; Haste's LayerNormGRU, ε = 1e-5) normalises each
    projection over its 3H entries: the step above with W_ih x_t + b_ih replaced by
    LN(W_ih x_t; γ_ih) + b_ih and W_hh h_{t-1} + b_hh by LN(W_hh h_{t-1}; γ_hh) + b_hh.
    Extra parameters ``gamma_ih_l{k}``, ``gamma_hh_l{k}`` (3H,), starting at 1. Not with
    ``reset_after=False``.

    Regularisers ``weight_drop``, ``recurrent_dropout`` and ``zoneout=p`` as for
    :class:`LSTM` (the GRU's zoneout is one p: it has no cell state).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        proj_size: int = 0,
        reset_after: bool = True,
        check_finite: bool = False,
        layer_norm: bool = False,
        weight_drop: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
    ) -> None:
        super().__init__(
            "gru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype, reset_after=reset_after,
            check_finite=check_finite, layer_norm=layer_norm, weight_drop=weight_drop,
            recurrent_dropout=recurrent_dropout, zoneout=zoneout,
        )
